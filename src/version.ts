// Filled in by scripts/build (bun build --define); "dev" when running from source.
declare const __GIT_COMMIT__: string | undefined;
export const VERSION = "0.1.0";
export const GIT_COMMIT: string = typeof __GIT_COMMIT__ === "string" ? __GIT_COMMIT__ : "dev";
