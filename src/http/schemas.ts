// zod schemas of the client requests. Objects are loose: fields the router does not know (logprobs,
// presence_penalty, ...) pass through to OpenAI-protocol providers untouched.
import { z } from "zod";

/** A field that may be absent or null (OpenAI SDKs send null for unset fields). */
export const nullish = <T extends z.ZodType>(t: T) => t.nullable().optional();

const textPart = z.looseObject({ type: z.literal("text"), text: z.string() });
const imagePart = z.looseObject({
  type: z.literal("image_url"),
  image_url: z.looseObject({ url: z.string().min(1), detail: z.string().optional() }),
});
const otherPart = z.looseObject({ type: z.string().refine((t) => t !== "text" && t !== "image_url") });
const contentPart = z.union([textPart, imagePart, otherPart]);

const toolCall = z.looseObject({
  id: z.string(),
  type: z.literal("function"),
  function: z.looseObject({ name: z.string().min(1), arguments: z.string() }),
});

const message = z
  .looseObject({
    role: z.enum(["system", "developer", "user", "assistant", "tool"]),
    content: nullish(z.union([z.string(), z.array(contentPart)])),
    name: z.string().optional(),
    tool_calls: z.array(toolCall).optional(),
    tool_call_id: z.string().optional(),
  })
  .superRefine((m, ctx) => {
    if (m.role === "tool" && !m.tool_call_id) ctx.addIssue({ code: "custom", path: ["tool_call_id"], message: "required for role tool" });
    if (m.role !== "assistant" && m.content == null) ctx.addIssue({ code: "custom", path: ["content"], message: `required for role ${m.role}` });
    if (m.role === "assistant" && m.content == null && !m.tool_calls?.length) {
      ctx.addIssue({ code: "custom", path: ["content"], message: "required unless tool_calls is set" });
    }
  });

const tool = z.looseObject({
  type: z.literal("function"),
  function: z.looseObject({
    name: z.string().min(1).max(64),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: nullish(z.boolean()),
  }),
});

const common = {
  model: z.string().min(1),
  stream: nullish(z.boolean()),
  stream_options: nullish(z.looseObject({ include_usage: z.boolean().optional() })),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().min(0).max(1)),
  max_tokens: nullish(z.number().int().positive()),
  stop: nullish(z.union([z.string(), z.array(z.string()).max(4)])),
  seed: nullish(z.number().int()),
  n: nullish(z.literal(1, { error: "only n=1 is supported" })),
  user: z.string().optional(),
};

export const ChatRequestSchema = z.looseObject({
  ...common,
  messages: z.array(message).min(1, "must contain at least one message"),
  max_completion_tokens: nullish(z.number().int().positive()),
  tools: z.array(tool).optional(),
  tool_choice: z
    .union([
      z.enum(["none", "auto", "required"]),
      z.looseObject({ type: z.literal("function"), function: z.looseObject({ name: z.string().min(1) }) }),
    ])
    .optional(),
  response_format: nullish(z.looseObject({ type: z.enum(["text", "json_object", "json_schema"]) })),
});

export const TextRequestSchema = z.looseObject({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1, "only one prompt per request is supported")]),
});

// ---------- plain requests: a check that implies the schemas' verdict ----------
// Most requests are plain: a model, messages whose content is a string, a few sampling fields. For those, this
// check stands in for zod's parse, which copies the body and leaves the garbage to be paid for under load
// (docs/decisions/0006-plain-request-check.md). It accepts only bodies the schemas above accept unchanged; anything
// else (tools, content parts, any other field, any other type or range) goes to zod, which also words the errors.
// tests/input.test.ts checks, on generated bodies through HTTP, that it never lets through what zod refuses.

const PLAIN_ROLES = new Set(["system", "developer", "user", "assistant"]);
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const positiveInt = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0;
const between0And = (v: unknown, max: number) => typeof v === "number" && v >= 0 && v <= max;

/** A field both request kinds share, plain: true when the schema accepts this value as it is. */
function plainCommon(key: string, v: unknown): boolean {
  switch (key) {
    case "model": return typeof v === "string" && v.length > 0;
    case "stream": return typeof v === "boolean";
    case "max_tokens": return positiveInt(v);
    case "temperature": return between0And(v, 2);
    case "top_p": return between0And(v, 1);
    case "user": return typeof v === "string";
    case "stream_options": {
      if (!isObj(v)) return false;
      for (const k in v) if (k !== "include_usage" || typeof v[k] !== "boolean") return false;
      return true;
    }
    default: return false;
  }
}

function plainMessage(m: unknown): boolean {
  if (!isObj(m)) return false;
  let role = false, content = false;
  for (const k in m) {
    const v = m[k];
    if (k === "role") {
      if (typeof v !== "string" || !PLAIN_ROLES.has(v)) return false;
      role = true;
    } else if (k === "content") {
      if (typeof v !== "string") return false;
      content = true;
    } else if (k !== "name" || typeof v !== "string") return false;
  }
  return role && content;
}

/**
 * True when every field of `body` is plain, its own by `own` (null: not one of its own fields) and the shared ones
 * by plainCommon, and both model and `required` are there.
 */
function plainBody(body: unknown, required: string, own: (key: string, v: unknown) => boolean | null): boolean {
  if (!isObj(body)) return false;
  let model = false, present = false;
  for (const k in body) {
    const v = body[k];
    const ok = own(k, v);
    if (ok === null ? !plainCommon(k, v) : !ok) return false;
    if (k === "model") model = true;
    else if (k === required) present = true;
  }
  return model && present;
}

function plainMessages(v: unknown): boolean {
  if (!Array.isArray(v) || v.length === 0) return false;
  for (let i = 0; i < v.length; i++) if (!plainMessage(v[i])) return false;
  return true;
}

/** Whether a field only chat requests have is plain (null: not one of theirs); plainTextField likewise for completions. */
const plainChatField = (k: string, v: unknown) => (k === "messages" ? plainMessages(v) : k === "max_completion_tokens" ? positiveInt(v) : null);
const plainTextField = (k: string, v: unknown) => (k === "prompt" ? typeof v === "string" : null);

/** True when ChatRequestSchema accepts `body` as it is and it is plain (see above); false means: ask zod. */
export const plainChatRequest = (body: unknown): boolean => plainBody(body, "messages", plainChatField);

/** True when TextRequestSchema accepts `body` as it is and its prompt is one string; false means: ask zod. */
export const plainTextRequest = (body: unknown): boolean => plainBody(body, "prompt", plainTextField);
