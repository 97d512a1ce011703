// Signing out of this browser: the server call, then forgetting the account
// state and the CSRF token, then the sign-in page.

import { post, clearCsrf } from "./api.js";
import { resetAccount } from "./state.js";
import { navigate } from "./router.js";
import { showError } from "./ui.js";

/** Forgets the local session state (the server has ended it) and shows sign-in. */
export function signedOut(message) {
  clearCsrf();
  resetAccount();
  navigate("/signin", { replace: true, keepError: Boolean(message) });
  if (message) showError(new Error(message));
}

/** POST /auth/logout, then signedOut(). */
export async function signOut() {
  try {
    await post("/auth/logout");
  } catch (err) {
    // Already revoked or expired: signed out either way.
    if (err.status !== 401) {
      showError(err);
      return;
    }
  }
  signedOut();
}
