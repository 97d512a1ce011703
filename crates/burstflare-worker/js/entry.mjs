// Worker entry module. workers-rs has no Workflow entrypoint, so this file
// re-exports the Rust Worker (built by worker-build into ../build/index.js)
// and defines BuildWorkflow, whose steps are Rust functions. Keep it tiny:
// every decision is made in Rust (src/workflow.rs).
import { WorkflowEntrypoint } from "cloudflare:workers";
import Worker from "../build/index.js";

export * from "../build/index.js";
export default Worker;

// worker-build attaches exported Rust functions to the entrypoint prototype.
const rustStep = Worker.prototype.workflow_step;

export class BuildWorkflow extends WorkflowEntrypoint {
  async run(event, step) {
    const payload = JSON.stringify(event.payload ?? {});
    const plan = JSON.parse(await step.do("plan", () => rustStep(this.env, "plan", payload)));
    const results = {};
    for (const name of plan.steps) {
      results[name] = JSON.parse(await step.do(name, () => rustStep(this.env, name, payload)));
    }
    return results;
  }
}
