// Passkey ceremonies: converts the server's JSON options (base64url binary
// fields) into what navigator.credentials.create/get take, and the resulting
// PublicKeyCredential into the `toJSON()` shape the API expects, with our own
// base64url helpers (PublicKeyCredential.toJSON is not everywhere yet).

export function b64urlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "===".slice((b64.length + 3) % 4);
  const bin = atob(padded);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function bytesToB64url(buf) {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function passkeysSupported() {
  return typeof window.PublicKeyCredential === "function" && Boolean(navigator.credentials);
}

const descriptors = (list) => (list || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) }));

/** Runs navigator.credentials.create with the server's creation options; answers the JSON credential. */
export async function createPasskey(publicKey) {
  const options = {
    ...publicKey,
    challenge: b64urlToBytes(publicKey.challenge),
    user: { ...publicKey.user, id: b64urlToBytes(publicKey.user.id) },
    excludeCredentials: descriptors(publicKey.excludeCredentials),
  };
  const cred = await navigator.credentials.create({ publicKey: options });
  if (!cred) throw new Error("No passkey was created.");
  const r = cred.response;
  const response = {
    clientDataJSON: bytesToB64url(r.clientDataJSON),
    attestationObject: bytesToB64url(r.attestationObject),
  };
  if (typeof r.getTransports === "function") response.transports = r.getTransports();
  return {
    id: cred.id,
    rawId: bytesToB64url(cred.rawId),
    type: cred.type,
    response,
    authenticatorAttachment: cred.authenticatorAttachment || null,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
  };
}

/** Runs navigator.credentials.get with the server's request options; answers the JSON credential. */
export async function getPasskey(publicKey) {
  const options = {
    ...publicKey,
    challenge: b64urlToBytes(publicKey.challenge),
    allowCredentials: descriptors(publicKey.allowCredentials),
  };
  const cred = await navigator.credentials.get({ publicKey: options });
  if (!cred) throw new Error("No passkey was chosen.");
  const r = cred.response;
  const response = {
    clientDataJSON: bytesToB64url(r.clientDataJSON),
    authenticatorData: bytesToB64url(r.authenticatorData),
    signature: bytesToB64url(r.signature),
  };
  if (r.userHandle && r.userHandle.byteLength) response.userHandle = bytesToB64url(r.userHandle);
  return {
    id: cred.id,
    rawId: bytesToB64url(cred.rawId),
    type: cred.type,
    response,
    authenticatorAttachment: cred.authenticatorAttachment || null,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
  };
}

/** A readable message for a WebAuthn DOMException (cancelled, not allowed, …). */
export function passkeyErrorMessage(err) {
  if (!err || !err.name) return String(err);
  switch (err.name) {
    case "NotAllowedError":
      return "The passkey prompt was cancelled or timed out.";
    case "InvalidStateError":
      return "This authenticator already holds a passkey for this account.";
    case "SecurityError":
      return "Passkeys are not available on this address (the page's domain must match the relying party).";
    case "NotSupportedError":
      return "This browser or authenticator does not support the requested passkey type.";
    default:
      return err.message || err.name;
  }
}
