// The request schema of POST /v1/responses (the stateless subset): what is refused names the field and why.
import { z } from "zod";
import { nullish } from "../schemas.ts";

const STATELESS = "this router is stateless and stores no responses; send the whole conversation in `input`";

/** A field the router refuses when set (null and absent are fine). */
const refused = (why: string) => z.any().refine((v) => v == null, { message: `is not supported: ${why}` }).optional();

const contentPart = z
  .looseObject({
    type: z.string(),
    text: z.string().optional(),
    refusal: z.string().optional(),
    image_url: nullish(z.string().min(1)),
    file_id: nullish(z.string()),
    detail: nullish(z.string()),
  })
  .superRefine((p, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: "custom", path: [path], message });
    switch (p.type) {
      case "input_text":
      case "output_text":
        if (p.text === undefined) issue("text", "is required");
        break;
      case "refusal":
        if (p.refusal === undefined) issue("refusal", "is required");
        break;
      case "input_image":
        if (p.image_url == null) {
          if (p.file_id != null) issue("file_id", "is not supported (this router stores no files): send image_url, a URL or a data: URL");
          else issue("image_url", "is required");
        }
        break;
      case "input_file":
      case "input_audio":
        issue("type", `${p.type} content parts are not supported by this router (only input_text and input_image)`);
        break;
      default:
        issue("type", `unknown content part type '${String(p.type).slice(0, 64)}' (expected input_text, input_image, output_text or refusal)`);
    }
  });

const content = z.union([z.string(), z.array(contentPart)], { error: "must be a string or an array of content parts" });

const MESSAGE_ROLES = new Set(["user", "system", "developer", "assistant"]);

const inputItem = z
  .looseObject({
    type: z.string().optional(),
    role: z.string().optional(),
    content: content.optional(),
    call_id: z.string().min(1).optional(),
    name: z.string().min(1).optional(),
    arguments: z.string().optional(),
    output: z.union([z.string(), z.array(contentPart)], { error: "must be a string or an array of content parts" }).optional(),
  })
  .superRefine((it, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    const type = it.type ?? "message";
    switch (type) {
      case "message": {
        if (it.role === undefined) return issue(["role"], "is required");
        if (!MESSAGE_ROLES.has(it.role)) return issue(["role"], "must be user, system, developer or assistant");
        if (it.content === undefined) return issue(["content"], "is required");
        if (typeof it.content === "string") return;
        for (let i = 0; i < it.content.length; i++) {
          const t = it.content[i].type;
          if (it.role === "assistant" ? t !== "output_text" && t !== "input_text" && t !== "refusal" : t === "refusal") {
            issue(["content", i, "type"], `${t} content is not allowed in a ${it.role} message`);
          }
        }
        return;
      }
      case "function_call":
        if (it.call_id === undefined) issue(["call_id"], "is required");
        if (it.name === undefined) issue(["name"], "is required");
        if (it.arguments === undefined) issue(["arguments"], "is required");
        return;
      case "function_call_output":
        if (it.call_id === undefined) issue(["call_id"], "is required");
        if (it.output === undefined) issue(["output"], "is required");
        else if (typeof it.output !== "string") {
          for (let i = 0; i < it.output.length; i++) {
            if (it.output[i].type !== "input_text" && it.output[i].type !== "output_text") issue(["output", i, "type"], "only text output is supported");
          }
        }
        return;
      case "reasoning":
        return; // the model's private reasoning from an earlier turn: dropped (chat completions has no place for it)
      case "item_reference":
        return issue(["type"], `item_reference is not supported: ${STATELESS} (Vercel AI SDK: providerOptions: { openai: { store: false } })`);
      default:
        return issue(["type"], `input items of type '${type.slice(0, 64)}' are not supported (expected message, function_call, function_call_output)`);
    }
  });

const tool = z
  .looseObject({
    type: z.string(),
    name: z.string().min(1).max(64).optional(),
    description: nullish(z.string()),
    parameters: nullish(z.record(z.string(), z.unknown())),
    strict: nullish(z.boolean()),
  })
  .superRefine((t, ctx) => {
    if (t.type !== "function") {
      ctx.addIssue({ code: "custom", path: ["type"], message: `'${t.type.slice(0, 64)}' tools are not supported by this router: only type "function" (built-in OpenAI tools need OpenAI's own Responses API)` });
    } else if (t.name === undefined) ctx.addIssue({ code: "custom", path: ["name"], message: "is required" });
  });

const toolChoice = z.any().superRefine((c, ctx) => {
  if (c == null || c === "auto" || c === "none" || c === "required") return;
  if (typeof c === "object" && !Array.isArray(c) && c.type === "function") {
    if (typeof c.name !== "string" || !c.name) ctx.addIssue({ code: "custom", path: ["name"], message: "is required" });
    return;
  }
  ctx.addIssue({ code: "custom", message: 'must be "auto", "none", "required" or {"type":"function","name":...}' });
}).optional();

const textFormat = z
  .looseObject({
    type: z.enum(["text", "json_object", "json_schema"]),
    name: z.string().min(1).optional(),
    schema: z.record(z.string(), z.unknown()).optional(),
    description: z.string().optional(),
    strict: nullish(z.boolean()),
  })
  .superRefine((f, ctx) => {
    if (f.type !== "json_schema") return;
    if (f.name === undefined) ctx.addIssue({ code: "custom", path: ["name"], message: "is required for json_schema" });
    if (f.schema === undefined) ctx.addIssue({ code: "custom", path: ["schema"], message: "is required for json_schema" });
  });

export const ResponsesRequestSchema = z.looseObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(inputItem).min(1, "must contain at least one item")], { error: "must be a string or an array of input items" }),
  instructions: nullish(z.string()),
  stream: nullish(z.boolean()),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().min(0).max(1)),
  max_output_tokens: nullish(z.number().int().positive()),
  tools: nullish(z.array(tool)),
  tool_choice: toolChoice,
  parallel_tool_calls: nullish(z.boolean()),
  text: nullish(z.looseObject({ format: nullish(textFormat) })),
  reasoning: nullish(z.looseObject({ effort: nullish(z.string()) })),
  user: nullish(z.string()),
  metadata: nullish(z.record(z.string(), z.string())),
  store: nullish(z.boolean()),
  previous_response_id: refused(STATELESS),
  conversation: refused(STATELESS),
  prompt: refused("stored prompt templates need OpenAI's own Responses API; send instructions and input"),
  background: z.any().refine((v) => v == null || v === false, { message: `is not supported: ${STATELESS}; use stream: true for long responses` }).optional(),
});

export type ResponsesRequest = z.infer<typeof ResponsesRequestSchema>;
export type InputItem = z.infer<typeof inputItem>;
export type Part = z.infer<typeof contentPart>;
