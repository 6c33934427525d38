// A certificate authority made at run time with openssl, and a server certificate it signs for 127.0.0.1 and
// localhost: what an https fake upstream serves and what a provider's tls.ca_file trusts. Also used by the
// benchmark (scripts/bench.d/realistic.ts).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCa {
  /** the directory the files are in */
  dir: string;
  /** path of the CA certificate (PEM): what tls.ca_file names */
  caFile: string;
  /** the server's key and certificate (PEM text), for https.createServer / Bun.serve */
  key: string;
  cert: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/**
 * A fresh CA and a leaf certificate signed by it, in a new temp directory; `names`: the leaf's subjectAltName
 * (by default 127.0.0.1 and localhost, where the fakes listen).
 */
export function makeTestCa(name = "failover-router test CA", names = "IP:127.0.0.1,DNS:localhost"): TestCa {
  const dir = mkdtempSync(join(tmpdir(), "fr-tls-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(dir, ["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", `/CN=${name}`]);
  openssl(dir, ["req", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]);
  writeFileSync(join(dir, "leaf.ext"), `subjectAltName=${names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  openssl(dir, ["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext"]);
  return { dir, caFile: join(dir, "ca.pem"), key: readFileSync(join(dir, "leaf.key"), "utf8"), cert: readFileSync(join(dir, "leaf.pem"), "utf8") };
}
