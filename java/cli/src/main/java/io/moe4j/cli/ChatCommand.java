package io.moe4j.cli;

import io.moe4j.infer.Completion;
import io.moe4j.infer.GenerationOptions;
import io.moe4j.infer.LoadedModel;
import io.moe4j.infer.TextGenerator;
import io.moe4j.ops.Backend;
import io.moe4j.text.ChatMessage;
import io.moe4j.text.ChatTemplate;
import io.moe4j.text.HfTokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Options;

/**
 * {@code moe4j chat --model DIR}: a REPL. Each turn renders the whole conversation with the model's
 * chat template (tokenizer_config.json), generates the assistant's reply with streaming, and keeps it
 * in the history. /reset clears the history, /exit (or end of input) quits.
 */
final class ChatCommand {

  int run(String[] args, InputStream in, PrintStream out, PrintStream err) {
    Options options = new Options();
    ModelOptions.addModel(options);
    options.addOption(null, "system", true, "a system message placed first in the conversation");
    options.addOption(null, "max-new-tokens", true, "at most this many tokens per reply (default 512)");
    ModelOptions.addSampling(options);
    CommandLine cl = Main.parse(options, args, "moe4j chat --model DIR [options]", null, out);
    if (cl == null) return 0; // --help
    int maxNew = ModelOptions.intOption(cl, "max-new-tokens", 512);
    if (maxNew <= 0) throw new Main.UsageException("--max-new-tokens must be > 0, got " + maxNew);
    List<ChatMessage> history = new ArrayList<>();
    if (cl.hasOption("system")) history.add(ChatMessage.system(cl.getOptionValue("system")));
    int fixed = history.size();
    try (HfTokenizer tokenizer = ModelOptions.tokenizer(cl);
        Backend backend = ModelOptions.openBackend(cl);
        LoadedModel loaded = ModelOptions.load(cl, backend)) {
      ChatTemplate template = tokenizer.chat();
      // The rendered template already holds the specials (bos, role markers): encode it as text.
      TextGenerator generator = new TextGenerator(loaded.model(), tokenizer, tokenizer::encode);
      GenerationOptions generation = new GenerationOptions(maxNew, loaded.eosIds(), List.of(), ModelOptions.sampling(cl));
      BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
      out.println("moe4j chat with " + loaded.directory() + " (/reset clears the conversation, /exit quits)");
      while (true) {
        out.print("> ");
        out.flush();
        String line = reader.readLine();
        if (line == null || line.strip().equals("/exit")) break;
        if (line.strip().equals("/reset")) {
          history.subList(fixed, history.size()).clear();
          out.println("(conversation cleared)");
          continue;
        }
        if (line.isBlank()) continue;
        history.add(ChatMessage.user(line));
        String prompt = template.render(history, true);
        Completion reply = generator.generate(List.of(prompt), generation, (b, piece) -> {
          out.print(piece);
          out.flush();
        }).get(0);
        out.println();
        history.add(ChatMessage.assistant(reply.text().strip()));
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the chat input: " + e.getMessage(), e);
    }
    return 0;
  }
}
