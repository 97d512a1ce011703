// Worker entry module. workers-rs has no Workflow entrypoint, so this file
// re-exports the Rust Worker (built by worker-build into ../build/index.js)
// and defines BuildWorkflow, whose steps are Rust functions. Keep it tiny:
// every decision is made in Rust (src/workflow.rs): the plan names the steps,
// how often the engine retries a step, and the step to run when one fails.
import { WorkflowEntrypoint } from "cloudflare:workers";
import Worker from "../build/index.js";

export * from "../build/index.js";
export default Worker;

// worker-build attaches exported Rust functions to the entrypoint prototype.
const rustStep = Worker.prototype.workflow_step;

export class BuildWorkflow extends WorkflowEntrypoint {
  async run(event, step) {
    const params = event.payload ?? {};
    const plan = JSON.parse(await step.do("plan", () => rustStep(this.env, "plan", JSON.stringify(params))));
    const config = { retries: { limit: plan.retries, delay: "1 second", backoff: "exponential" } };
    const results = {};
    try {
      for (const name of plan.steps) {
        // Each step sees the results of the steps before it.
        const payload = JSON.stringify({ ...params, results });
        results[name] = JSON.parse(await step.do(name, config, () => rustStep(this.env, name, payload)));
      }
    } catch (e) {
      if (!plan.on_error) throw e;
      const payload = JSON.stringify({ ...params, error: String(e?.message ?? e) });
      await step.do(plan.on_error, () => rustStep(this.env, plan.on_error, payload));
    }
    return results;
  }
}
