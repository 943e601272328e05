/** Statuses after which a group changes no more. */
const TERMINAL_GROUP_STATUSES = ['succeeded', 'failed', 'cancelled'];

/**
 * Call a gateway over HTTP (JSON body when given) and answer the status and the parsed JSON reply, so
 * a suite can assert on both, errors included.
 */
export async function callGateway<T>(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const response = await fetch(`${url}${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return { status: response.status, json: (await response.json()) as T };
}

/** Long-poll `GET /v1/groups/:id?wait=30` until the group is terminal; answers its view. */
export async function waitGroup<T extends { status: string }>(url: string, id: string): Promise<T> {
  for (;;) {
    const { json } = await callGateway<T>(url, 'GET', `/v1/groups/${id}?wait=30`);
    if (TERMINAL_GROUP_STATUSES.includes(json.status)) return json;
  }
}
