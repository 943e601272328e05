import { checkCallbackUrl, InferlineError, type Settings, type Tenant } from '@inferline/shared';

/**
 * Accept a request's `callback_url` before anything is stored: http(s), resolving to public addresses
 * only unless `callback_allow_private` (checkCallbackUrl), and a secret to sign it with (the tenant's
 * `callback_secret`, else `callback_secret` of the settings): a callback is never sent unsigned.
 * @returns the URL as given, or undefined when there is none.
 * @throws InferlineError `invalid_callback_url` (400).
 */
export async function acceptCallbackUrl(url: string | undefined, tenant: Tenant | undefined, settings: Settings): Promise<string | undefined> {
  if (url === undefined) return undefined;
  if ((tenant?.callback_secret ?? settings.callback_secret) === undefined) {
    throw new InferlineError('invalid_callback_url', 'callback_url: no signing secret is configured (callback_secret of the API key entry, or CALLBACK_SECRET)');
  }
  await checkCallbackUrl(url, settings.callback_allow_private);
  return url;
}
