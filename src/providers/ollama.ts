// PLACEHOLDER: being written.
import type { ProviderConfig } from "../config/schema.ts";
import type { Adapter, CallOptions, ChatRequest, TextRequest, UpstreamResult } from "./types.ts";

export class OllamaAdapter implements Adapter {
  constructor(readonly config: ProviderConfig) {}
  chat(_req: ChatRequest, _opts: CallOptions): Promise<UpstreamResult> {
    return Promise.resolve({ ok: false, status: 501, kind: "http", message: "not implemented" });
  }
  text(_req: TextRequest, _opts: CallOptions): Promise<UpstreamResult> {
    return Promise.resolve({ ok: false, status: 501, kind: "http", message: "not implemented" });
  }
}
