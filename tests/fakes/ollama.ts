// A fake Ollama server speaking the native API: POST /api/chat and /api/generate (one JSON object, or an
// application/x-ndjson stream whose last line has done:true and the token counts; streaming is the default
// as in Ollama), and 404 {"error":"model \"x\" not found, try pulling it first"} for models it does not
// have. The fault injection of FakeServer applies (status, hang, cutAfter counts NDJSON lines, ...).
import { FakeServer } from "./common.ts";
import { splitText } from "./openai.ts";

export interface OllamaFakeOptions {
  /** the reply text (split into `chunks` NDJSON lines when streaming) */
  reply?: string;
  chunks?: number;
  /** prompt_eval_count / eval_count of the final object; null leaves them out */
  counts?: { prompt_eval_count: number; eval_count: number } | null;
  /** answer chat requests with this tool call (arguments as an object, as Ollama sends them) */
  toolCall?: { name: string; arguments: Record<string, unknown> };
  /** done_reason of the final object (default "stop") */
  doneReason?: string;
  /** models served; a request for another model gets Ollama's 404 */
  models?: string[];
  /** when streaming, send {"error": streamError} after this many content lines instead of finishing */
  streamError?: { after: number; message: string };
  /** chat only: the model's thinking, sent before the reply (message.thinking) */
  thinking?: string;
  /** when streaming, end the body cleanly without the final done:true object */
  noDone?: boolean;
}

const CREATED_AT = "2024-07-22T20:33:28.123648Z";

export async function startOllamaFake(opts: OllamaFakeOptions = {}): Promise<FakeServer> {
  const reply = opts.reply ?? "Hello from the fake Ollama server.";
  const models = opts.models ?? ["llama3:latest"];
  const known = (m: string) => models.includes(m) || models.includes(`${m}:latest`);
  const fake = new FakeServer(async (req, res, stream) => {
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
      res.end(JSON.stringify(body));
    };
    const chat = req.path === "/api/chat";
    if (req.method !== "POST" || (!chat && req.path !== "/api/generate")) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("404 page not found");
      return;
    }
    const model = req.body?.model;
    if (typeof model !== "string" || !model) return json(400, { error: "model is required" });
    if (!known(model)) return json(404, { error: `model "${model}" not found, try pulling it first` });
    if (chat && !Array.isArray(req.body.messages)) return json(400, { error: "messages must be an array" });
    if (!chat && typeof req.body.prompt !== "string") return json(400, { error: "prompt must be a string" });

    const toolCall = chat && opts.toolCall && req.body.tools?.length ? opts.toolCall : undefined;
    const final = () => ({
      done: true,
      done_reason: opts.doneReason ?? "stop",
      total_duration: 885095291, load_duration: 3753500, prompt_eval_duration: 328493000, eval_duration: 552222000,
      ...(opts.counts === null ? {} : opts.counts ?? { prompt_eval_count: 26, eval_count: 12 }),
      ...(chat ? {} : { context: [1, 2, 3] }),
    });
    const piece = (content: string, extra: Record<string, unknown> = {}) =>
      chat
        ? { model, created_at: CREATED_AT, message: { role: "assistant", content, ...extra } }
        : { model, created_at: CREATED_AT, response: content };

    if (req.body.stream === false) {
      const extra = chat && opts.thinking ? { thinking: opts.thinking } : {};
      const body = toolCall ? piece("", { ...extra, tool_calls: [{ function: toolCall }] }) : piece(reply, extra);
      return json(200, { ...body, ...final() });
    }
    const w = stream("application/x-ndjson");
    const line = (o: unknown) => w.write(JSON.stringify(o) + "\n");
    if (chat && opts.thinking && !(await line({ ...piece("", { thinking: opts.thinking }), done: false }))) return;
    if (toolCall) {
      if (!(await line({ ...piece("", { tool_calls: [{ function: toolCall }] }), done: false }))) return;
    } else {
      let n = 0;
      for (const p of splitText(reply, opts.chunks ?? 4)) {
        if (opts.streamError && n === opts.streamError.after) {
          await line({ error: opts.streamError.message });
          w.end();
          return;
        }
        if (!(await line({ ...piece(p), done: false }))) return;
        n++;
      }
    }
    if (!opts.noDone && !(await line({ ...piece(""), ...final() }))) return;
    w.end();
  });
  return fake.start();
}
