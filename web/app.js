// Shows the control plane's health on the landing page. The full web app
// (dashboard, terminal, editor) arrives with the web issue.
const el = document.getElementById("health");
try {
  const resp = await fetch("/api/v1/health");
  const body = await resp.json();
  const report = resp.ok ? body : body.error.details;
  el.textContent = resp.ok
    ? `Control plane healthy (schema v${report.schema.version}, ${report.environment}).`
    : `Control plane unhealthy: ${body.error.message}`;
  el.className = resp.ok ? "ok" : "bad";
} catch (err) {
  el.textContent = `Control plane unreachable: ${err}`;
  el.className = "bad";
}
