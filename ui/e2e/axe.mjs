// Accessibility scans for the end-to-end tests (not a test file itself): axe-core injected into
// the page, run on what the operator sees now.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

/** axe-core's script, injected into the page to scan what the operator sees. */
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** The serious and critical accessibility violations axe-core finds on the screen now. */
export async function axeViolations(browser) {
  if (!(await browser.execute(() => typeof window.axe === "object"))) await browser.execute(AXE);
  const found = await browser.executeAsync((done) => {
    window.axe.run(document, { resultTypes: ["violations"] }).then(
      (r) => done(r.violations),
      (e) => done([{ id: "axe-error", impact: "critical", help: String(e), nodes: [] }]),
    );
  });
  return found
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")}`);
}
