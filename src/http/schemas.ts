// zod schemas of the client requests. Objects are loose: fields the router does not know (logprobs,
// presence_penalty, ...) pass through to OpenAI-protocol providers untouched.
import { z } from "zod";

const nullish = <T extends z.ZodType>(t: T) => t.nullable().optional();

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
