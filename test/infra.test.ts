import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { keys, loadModelConfig, modelShards, loadSettings, scanRepository, Settings } from '@inferline/shared';
import { dashboardQueries, dashboardRulesFile, type GrafanaDashboard } from './harness/dashboard-rules.ts';
import { GATEWAY_NODE_FLAGS } from '../packages/cli/src/commands/start.ts';
import { ROOT } from './harness/processes.ts';
import type { IScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodTemplateSpec } from 'kubernetes-models/v1/PodTemplateSpec';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';

/**
 * Offline checks of the deployment files (infra/, docker-compose.yml): kustomize renders every overlay,
 * the rendered objects validate against the Kubernetes and KEDA schemas (npm kubernetes-models,
 * @kubernetes-models/keda) and agree with the code (settings, ports, stream keys, grace periods);
 * promtool checks the scrape configs and the alert rules and runs their unit tests; every query of
 * the Grafana dashboard parses; docker-compose accepts the compose file. Tools: kubectl (its
 * kustomize), promtool (Debian `prometheus`), docker-compose (Debian); .ci/run installs them.
 */

const INFRA = join(ROOT, 'infra');
const OVERLAYS = ['dev', 'production'];
/** Longest run of one external tool, ms: each renders or checks a few files. */
const TOOL_TIMEOUT_MS = 60_000;

/** Run a tool to completion; fails the test with its output when it exits non-zero or is missing. */
function run(command: string, args: string[], cwd = ROOT): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: TOOL_TIMEOUT_MS });
  if (result.error) assert.fail(`${command} could not run (${result.error.message}); .ci/run installs it`);
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** A Kubernetes object as rendered: what every kind has; the checks narrow it by kind. */
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
}
/** An object that runs pods (Deployment, StatefulSet, Job). */
type PodOwner = K8sObject & { spec: { template: IPodTemplateSpec } };

/** `value`, or the test fails saying what is missing. */
function need<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) assert.fail(`missing: ${what}`);
  return value;
}

/** The schema class of an object's apiVersion and kind, from kubernetes-models or @kubernetes-models/keda. */
async function modelClass(object: K8sObject): Promise<new (data: unknown) => { validate(): void }> {
  const module: string = object.apiVersion.startsWith('keda.sh/')
    ? `@kubernetes-models/keda/${object.apiVersion}/${object.kind}`
    : `kubernetes-models/${object.apiVersion}/${object.kind}`;
  const exports = (await import(module).catch(() => assert.fail(`no schema for ${object.apiVersion} ${object.kind} (${module})`))) as Record<
    string,
    new (data: unknown) => { validate(): void }
  >;
  const found = exports[object.kind];
  assert.ok(found, `${module} exports no ${object.kind}`);
  return found;
}

/** Bytes of a Redis memory figure (`1gb`, `256mb`: https://redis.io/docs/latest/operate/oss_and_stack/management/config-file/). */
function redisBytes(text: string): number {
  const match = /^(\d+)(kb|mb|gb)?$/i.exec(text);
  assert.ok(match, `not a Redis memory figure: ${text}`);
  const unit = { kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(match[2] ?? '').toLowerCase() as 'kb' | 'mb' | 'gb'] ?? 1;
  return Number(match[1]) * unit;
}

/** Bytes of a Kubernetes quantity with a binary suffix (`1536Mi`, `6Gi`). */
function quantityBytes(text: string): number {
  const match = /^(\d+)(Ki|Mi|Gi)$/.exec(text);
  assert.ok(match, `not a binary quantity: ${text}`);
  return Number(match[1]) * { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[match[2] as 'Ki' | 'Mi' | 'Gi'];
}

/** Environment variables the code reads: the settings, and the two read outside them (logger.ts, runtime/backend.ts). */
/** Variables a container may set: inferline's settings, and NODE_OPTIONS (Node's own: the gateway's GATEWAY_NODE_FLAGS). */
const settingNames = new Set([...Object.keys(Settings.properties).map((name) => name.toUpperCase()), 'LOG_LEVEL', 'INFERLINE_BACKEND', 'NODE_OPTIONS']);
/** The NODE_OPTIONS a gateway container sets: the flags `inferline start` gives its gateway. */
const GATEWAY_NODE_OPTIONS = GATEWAY_NODE_FLAGS.join(' ');
const defaults = loadSettings({});

/** The model names of the repository (models/<name>/config.json). */
async function modelNames(): Promise<string[]> {
  const entries = await readdir(join(ROOT, 'models'), { withFileTypes: true });
  return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
}

/** Metric names the code registers (`name: 'inferline_...'` in the metrics modules). */
async function exportedMetricNames(): Promise<Set<string>> {
  const files = ['packages/gateway/src/metrics.ts', 'packages/worker/src/metrics.ts', 'packages/worker/src/aggregator-metrics.ts'];
  const names = new Set<string>();
  for (const file of files) {
    for (const match of (await readFile(join(ROOT, file), 'utf8')).matchAll(/name: '(inferline_\w+)'/g)) names.add(match[1] ?? '');
  }
  return names;
}

/** The inferline_* metric names a PromQL text uses, histogram suffixes removed. */
function usedMetricNames(promql: string): string[] {
  return [...promql.matchAll(/\binferline_[a-z_]+\b/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')).filter((name) => !name.startsWith('inferline_dashboard'));
}

describe('Kubernetes manifests (infra/k8s)', () => {
  const rendered = new Map<string, K8sObject[]>();
  before(() => {
    const version = run('kubectl', ['version', '--client']);
    const kustomize = /Kustomize Version: v(\d+)/.exec(version);
    assert.ok(kustomize && Number(kustomize[1]) >= 4, `kubectl's kustomize is too old for these kustomizations (labels, patches with targets); need kubectl >= 1.21:\n${version}`);
    for (const overlay of OVERLAYS) {
      const text = run('kubectl', ['kustomize', join(INFRA, 'k8s', 'overlays', overlay)]);
      rendered.set(overlay, parseAllDocuments(text).map((doc) => doc.toJS() as K8sObject).filter(Boolean));
    }
  });

  const objects = (overlay: string): K8sObject[] => need(rendered.get(overlay), `${overlay} rendered`);
  const find = <T>(overlay: string, kind: string, name: string): T & K8sObject =>
    need(objects(overlay).find((o) => o.kind === kind && o.metadata.name === name), `${overlay}: ${kind} ${name}`) as T & K8sObject;
  const podOwners = (overlay: string): PodOwner[] => objects(overlay).filter((o): o is PodOwner => ['Deployment', 'StatefulSet', 'Job'].includes(o.kind));
  const firstContainer = (owner: PodOwner): IContainer => need(owner.spec.template.spec?.containers[0], `${owner.metadata.name}: a container`);

  for (const overlay of OVERLAYS) {
    test(`${overlay}: every rendered object validates against its Kubernetes or KEDA schema, in one namespace`, async () => {
      const list = objects(overlay);
      assert.ok(list.length > 10);
      const namespace = need(list.find((o) => o.kind === 'Namespace')?.metadata.name, 'the overlay creates its namespace');
      for (const object of list) {
        const Model = await modelClass(object);
        assert.doesNotThrow(() => new Model(object).validate(), `${object.kind} ${object.metadata.name}`);
        if (object.kind !== 'Namespace') assert.equal(object.metadata.namespace, namespace, `${object.kind} ${object.metadata.name}`);
      }
    });

    test(`${overlay}: one worker Deployment per model, scaled by KEDA on XLEN of the streams of its served versions`, async () => {
      const scan = await scanRepository(join(ROOT, 'models'));
      const names = await modelNames();
      assert.deepEqual(names, scan.models.map((m) => m.config.name).sort(), 'one worker Deployment for each model of the repository');
      const auths = objects(overlay).filter((o) => o.kind === 'TriggerAuthentication').map((o) => o.metadata.name);
      for (const name of names) {
        const config = await loadModelConfig(join(ROOT, 'models', name));
        const deployment = find<IDeployment & PodOwner>(overlay, 'Deployment', `worker-${name}`);
        assert.deepEqual(firstContainer(deployment).args, ['worker', '--models', name]);
        const scaled = find<IScaledObject>(overlay, 'ScaledObject', `worker-${name}`);
        assert.equal(scaled.spec.scaleTargetRef.name, deployment.metadata.name);
        if (config.scale_to_zero) assert.equal(scaled.spec.minReplicaCount, 0, `${name} is scale_to_zero: its workers may go to zero`);
        else assert.ok((scaled.spec.minReplicaCount ?? 0) >= 1, 'the gateway admits requests only for a version a live worker holds unless scale_to_zero: at 0 nothing would reach the stream');
        const triggers = scaled.spec.triggers;
        assert.ok(triggers.length > 0);
        const inFlight = config.batching.max_batch_size * (config.batching.max_inflight_batches ?? (config.instance_group?.count ?? 1) + 1);
        for (const trigger of triggers) {
          const metadata = trigger.metadata as Record<string, string>;
          assert.equal(trigger.type, 'redis-streams');
          assert.equal(metadata.lagCount, undefined, 'XINFO GROUPS lag turns nil after out-of-order XDELs');
          assert.equal(metadata.consumerGroup, undefined, 'without consumerGroup the scaler reads XLEN');
          assert.ok(Number(metadata.streamLength) >= inFlight, `${name}: streamLength below what one busy worker holds in flight (${inFlight})`);
          assert.match(metadata.stream ?? '', /^il:\{m:[a-z0-9_.-]+(~\d+)?\}:v\d+:requests(:p\d+)?$/);
          assert.ok(auths.includes(need(trigger.authenticationRef, 'authenticationRef').name), 'authenticationRef names a TriggerAuthentication');
        }
        const streams = triggers.map((t) => (t.metadata as Record<string, string>).stream);
        for (const version of scan.models.find((m) => m.config.name === name)?.served ?? []) {
          for (const shard of modelShards(name, config.partitions)) {
            for (const stream of keys.requestStreams(shard, version, config.batching.priority_levels)) {
              assert.ok(streams.includes(stream), `${name}: no trigger on stream ${stream} of served version ${version} (every priority level's and every partition's stream holds requests)`);
            }
          }
        }
        assert.ok(streams.includes(keys.requests(name, 1)));
      }
    });

    test(`${overlay}: containers set only real settings, probe real endpoints on their ports, and outlast STOP_GRACE_MS`, () => {
      const config = find<IConfigMap>(overlay, 'ConfigMap', 'inferline-config');
      for (const name of Object.keys(config.data ?? {})) assert.ok(settingNames.has(name), `ConfigMap sets ${name}, not a setting`);
      for (const owner of podOwners(overlay)) {
        if (owner.metadata.name === 'redis') continue;
        const container = firstContainer(owner);
        const env = new Map((container.env ?? []).map((e) => [e.name, e.value ?? '']));
        for (const name of env.keys()) assert.ok(settingNames.has(name), `${owner.metadata.name} sets ${name}, not a setting`);
        if (owner.metadata.name === 'gateway') assert.equal(env.get('NODE_OPTIONS'), GATEWAY_NODE_OPTIONS, 'the gateway runs with the flags `start` gives it');
        const args = container.args ?? [];
        if (owner.kind === 'Job') {
          assert.match(args.join(' '), /main\.ts models$/, 'the Job runs `inferline models`');
          continue;
        }
        assert.deepEqual(container.env?.find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef, { name: 'inferline-redis', key: 'url' });
        const role = need(args[0], `${owner.metadata.name}: a role`);
        const portSetting = need(({ gateway: 'PORT', worker: 'METRICS_PORT', aggregator: 'AGGREGATOR_METRICS_PORT' } as Record<string, string>)[role], `${owner.metadata.name}: role ${role}`);
        const port = Number(env.get(portSetting) ?? defaults.port);
        assert.ok(port > 0, `${owner.metadata.name}: ${portSetting} serves the probes`);
        const named = new Map((container.ports ?? []).map((p) => [p.name, p.containerPort]));
        assert.equal(container.livenessProbe?.httpGet?.path, '/healthz');
        assert.equal(container.readinessProbe?.httpGet?.path, '/readyz');
        for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
          if (probe) assert.equal(named.get(String(probe.httpGet?.port)), port, `${owner.metadata.name}: probe port`);
        }
        assert.equal(Number(owner.spec.template.metadata?.annotations?.['prometheus.io/port']), port, `${owner.metadata.name}: scrape port`);
        if (role === 'worker') {
          const stopGraceMs = Number(env.get('STOP_GRACE_MS') ?? defaults.stop_grace_ms);
          const graceS = need(owner.spec.template.spec?.terminationGracePeriodSeconds, 'terminationGracePeriodSeconds');
          assert.ok(graceS * 1000 > stopGraceMs, `${owner.metadata.name}: grace ${graceS} s <= STOP_GRACE_MS ${stopGraceMs}`);
        }
      }
      for (const service of objects(overlay).filter((o): o is IService & K8sObject => o.kind === 'Service')) {
        const selector = Object.entries(service.spec?.selector ?? {});
        const pods = podOwners(overlay).filter((owner) => selector.every(([k, v]) => owner.spec.template.metadata?.labels?.[k] === v));
        assert.ok(selector.length > 0 && pods.length > 0, `Service ${service.metadata.name} selects no pod`);
      }
    });

    test(`${overlay}: Redis is durable (AOF fsync always, noeviction, maxmemory below its memory limit) and KEDA reaches it by its full name`, () => {
      const redis = find<IStatefulSet & PodOwner>(overlay, 'StatefulSet', 'redis');
      const container = firstContainer(redis);
      const args = (container.args ?? []).join(' ');
      assert.match(args, /--appendonly yes/);
      assert.match(args, /--appendfsync always/);
      assert.match(args, /--maxmemory-policy noeviction/);
      assert.match(args, /--maxmemory \$\(REDIS_MAXMEMORY\)/);
      const maxmemory = need(container.env?.find((e) => e.name === 'REDIS_MAXMEMORY')?.value, 'REDIS_MAXMEMORY');
      const limit = String(need(container.resources?.limits?.memory, 'a memory limit'));
      assert.ok(quantityBytes(limit) >= 1.25 * redisBytes(maxmemory), `memory limit ${limit} leaves no room above maxmemory ${maxmemory} (AOF rewrite fork, buffers)`);
      const secret = find<ISecret>(overlay, 'Secret', 'inferline-redis');
      const host = `redis.${redis.metadata.namespace}.svc.cluster.local:6379`;
      assert.equal(secret.stringData?.address, host);
      assert.equal(secret.stringData?.url, `redis://${host}`);
    });
  }
});

describe('Prometheus configuration and alert rules (infra/prometheus)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-infra-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('promtool accepts the compose scrape config and the alert rules, and their unit tests pass', () => {
    run('promtool', ['check', 'config', 'prometheus.yml'], join(INFRA, 'prometheus'));
    run('promtool', ['check', 'rules', 'alerts.yml'], join(INFRA, 'prometheus'));
    const tests = run('promtool', ['test', 'rules', 'alerts.test.yml'], join(INFRA, 'prometheus'));
    assert.match(tests, /SUCCESS/);
  });

  test('promtool accepts the Kubernetes scrape config (its pod discovery swapped for static targets)', async () => {
    // Debian's promtool is built without Kubernetes discovery: the relabelling, regexes and the rest are
    // checked with the discovery replaced.
    const config = parse(await readFile(join(INFRA, 'prometheus', 'prometheus-kubernetes.yml'), 'utf8')) as { scrape_configs: Record<string, unknown>[]; rule_files: string[] };
    for (const scrape of config.scrape_configs) {
      assert.deepEqual(scrape.kubernetes_sd_configs, [{ role: 'pod' }]);
      delete scrape.kubernetes_sd_configs;
      scrape.static_configs = [{ targets: ['127.0.0.1:9100'] }];
    }
    config.rule_files = [join(INFRA, 'prometheus', 'alerts.yml')];
    await writeFile(join(dir, 'prometheus-kubernetes.yml'), stringify(config));
    run('promtool', ['check', 'config', join(dir, 'prometheus-kubernetes.yml')]);
  });

  test('every metric the rules and the dashboard query is one the code exports', async () => {
    const exported = await exportedMetricNames();
    const alerts = await readFile(join(INFRA, 'prometheus', 'alerts.yml'), 'utf8');
    const dashboard = JSON.parse(await readFile(join(INFRA, 'grafana', 'inferline.json'), 'utf8')) as GrafanaDashboard;
    const used = [...usedMetricNames(alerts), ...dashboardQueries(dashboard).flatMap((q) => usedMetricNames(q.expr))];
    assert.ok(used.length > 10);
    for (const name of used) assert.ok(exported.has(name), `${name} is not exported by the code (exported: ${[...exported].join(', ')})`);
  });

  test('every query of the Grafana dashboard parses (promtool check rules on rules generated from it); it is templated per model', async () => {
    const dashboard = JSON.parse(await readFile(join(INFRA, 'grafana', 'inferline.json'), 'utf8')) as GrafanaDashboard & {
      templating: { list: { name: string }[] };
    };
    assert.ok(dashboard.templating.list.some((v) => v.name === 'model'));
    const queries = dashboardQueries(dashboard);
    const titles = new Set(queries.map((q) => q.panel));
    for (const title of ['Throughput', 'Mean batch size', 'Queue depth', 'Queue latency', 'Compute latency', 'Workers', 'Errors by code (workers)']) {
      assert.ok(titles.has(title), `no panel ${title}`);
    }
    for (const query of queries.filter((q) => !q.expr.includes('inferline_reduce') && !q.expr.includes('status_code'))) {
      assert.match(query.expr, /model=~"\$model"/, `${query.panel}: not filtered by $model`);
    }
    await writeFile(join(dir, 'dashboard-rules.yml'), dashboardRulesFile(dashboard));
    const out = run('promtool', ['check', 'rules', join(dir, 'dashboard-rules.yml')]);
    assert.match(out, new RegExp(`SUCCESS: ${queries.length} rules found`));
  });
});

describe('docker-compose.yml', () => {
  test('docker-compose accepts it; Redis is durable, ports bind to 127.0.0.1, and each role has a real health check', () => {
    run('docker-compose', ['config', '-q']);
    const config = parse(run('docker-compose', ['config'])) as {
      services: Record<string, { command?: string[]; ports?: (string | { host_ip?: string })[]; healthcheck?: { test: string[] }; environment?: Record<string, string> }>;
    };
    const redis = (config.services.redis?.command ?? []).join(' ');
    assert.match(redis, /--appendfsync always/);
    assert.match(redis, /--maxmemory-policy noeviction/);
    assert.match(redis, /--maxmemory \d+(mb|gb)/);
    for (const [name, service] of Object.entries(config.services)) {
      for (const port of service.ports ?? []) {
        const hostIp = typeof port === 'string' ? port.split(':')[0] : port.host_ip;
        assert.equal(hostIp, '127.0.0.1', `${name} publishes a port on every interface`);
      }
      for (const variable of Object.keys(service.environment ?? {})) {
        if (['gateway', 'worker', 'aggregator', 'models'].includes(name)) assert.ok(settingNames.has(variable), `${name} sets ${variable}, not a setting`);
      }
      if (name === 'gateway') assert.equal((service.environment as Record<string, unknown> | undefined)?.NODE_OPTIONS, GATEWAY_NODE_OPTIONS, 'the gateway runs with the flags `start` gives it');
    }
    const probes = { gateway: ['8080', 'PORT'], worker: ['9100', 'METRICS_PORT'], aggregator: ['9100', 'AGGREGATOR_METRICS_PORT'] } as const;
    for (const [name, [port, setting]] of Object.entries(probes)) {
      const service = config.services[name];
      assert.match((service?.healthcheck?.test ?? []).join(' '), new RegExp(`127\\.0\\.0\\.1:${port}/readyz`), `${name}: health check on /readyz`);
      if (setting !== 'PORT') assert.equal(service?.environment?.[setting], port, `${name}: ${setting}`);
    }
  });
});
