import type { JobView } from '@inferline/shared';

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

/**
 * `POST /v1/jobs` with a JSON body: the status and the job view when the reply is one; status 0 when
 * the connection failed (a gateway killed under it) or no answer came within 10 s.
 */
export async function postJob(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; view?: JobView }> {
  try {
    const response = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
    const view = (await response.json().catch(() => undefined)) as JobView | undefined;
    return { status: response.status, ...(view ? { view } : {}) };
  } catch {
    return { status: 0 };
  }
}

/** Long-poll `GET /v1/jobs/:id?wait=30` until the job is terminal, retrying while the gateway answers 5xx or not at all; its view. */
export async function finalJobView(url: string, id: string): Promise<JobView> {
  for (;;) {
    const response = await fetch(`${url}/v1/jobs/${id}?wait=30`).catch(() => undefined);
    if (!response || response.status >= 500) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      continue;
    }
    const view = (await response.json()) as JobView;
    if (view.status !== 'queued' && view.status !== 'running') return view;
  }
}

/**
 * `clients` loops, each posting one text after another (`postJob`, round robin over `texts`, 20 ms
 * pause after anything but 200/202) until `stop()`: the ids accepted, in order, and how often each
 * status was answered (0 = no answer). `stop()` resolves once every loop has ended.
 */
export function submitUnderLoad(url: string, texts: readonly string[], clients = 8): { accepted: string[]; statuses: Map<number, number>; stop: () => Promise<void> } {
  const accepted: string[] = [];
  const statuses = new Map<number, number>();
  let stopped = false;
  let sent = 0;
  const client = async (): Promise<void> => {
    while (!stopped) {
      const { status, view } = await postJob(url, { model: 'glove-embed', input: texts[sent++ % texts.length] });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if ((status === 202 || status === 200) && view) accepted.push(view.id);
      else await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const loops = Array.from({ length: clients }, client);
  return {
    accepted,
    statuses,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}
