import { Command, InvalidArgumentError, Option } from 'commander';
import { isInferlineError, ON_ITEM_ERROR, REDUCERS } from '@inferline/shared';
import { GROUP_DEFAULTS, runGroupCommand, type GroupCommandOptions } from './commands/group.ts';
import { submit, SUBMIT_DEFAULTS } from './commands/submit.ts';
import { trapStopSignals } from './signals.ts';

/**
 * The `inferline` command. Settings come from the environment (`loadSettings`, e.g. `PORT`,
 * `REDIS_URL`, `WORKERS`); options only select what a command does. User-facing errors
 * (InferlineError, failed system calls) print `error: <message>` and exit 1; anything else is a bug
 * and prints its stack. The role commands load their code (fastify, TF.js) only when they run, so a
 * client command such as `group` starts fast.
 */

function positiveInteger(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new InvalidArgumentError('expected a positive integer');
  return number;
}

function positiveNumber(value: string): number {
  const number = Number(value);
  if (!(number > 0)) throw new InvalidArgumentError('expected a positive number');
  return number;
}

const program = new Command('inferline')
  .description('Queue-backed distributed inference for TensorFlow.js models')
  .showHelpAfterError('(add --help for usage)');

program
  .command('start')
  .description('run everything on this machine: build missing models, a private Redis unless REDIS_URL is set, one gateway, WORKERS workers, one aggregator')
  .action(async () => (await import('./commands/start.ts')).runStart());

program
  .command('gateway')
  .description('run the HTTP gateway (REDIS_URL, default redis://127.0.0.1:6379)')
  .action(async () => (await import('./commands/gateway.ts')).runGateway());

program
  .command('worker')
  .description('run a worker (REDIS_URL, default redis://127.0.0.1:6379)')
  .option('--models <names>', 'comma-separated models to serve (default: every model of the repository)')
  .action(async (...args: Parameters<typeof import('./commands/worker.ts').runWorker>) => (await import('./commands/worker.ts')).runWorker(...args));

program
  .command('aggregator')
  .description('run the reducers of aggregation groups (REDIS_URL, default redis://127.0.0.1:6379)')
  .action(async () => (await import('./commands/aggregator.ts')).runAggregator());

program
  .command('models')
  .description('fetch and convert the models the repository lacks')
  .argument('[names...]', 'models to build (default: every known model)')
  .action(async (...args: Parameters<typeof import('./commands/models.ts').runModels>) => (await import('./commands/models.ts')).runModels(...args));

program
  .command('submit')
  .description('submit jobs and print their results (--text: one job; --file: one job per line, JSON lines in input order)')
  .requiredOption('--model <name>', 'model to run')
  .addOption(new Option('--text <text>', 'one input; prints the job as JSON').conflicts('file'))
  .addOption(new Option('--file <path>', 'inputs, one text per line (empty lines skipped)'))
  .option('--url <url>', 'gateway URL', SUBMIT_DEFAULTS.url)
  .option('--concurrency <n>', 'requests in flight with --file', positiveInteger, SUBMIT_DEFAULTS.concurrency)
  .option('--bulk-size <n>', 'inputs per request with --file (the bulk form of POST /v1/jobs; 1 = one request per input)', positiveInteger, SUBMIT_DEFAULTS.bulkSize)
  .option('--wait-s <seconds>', 'longest wait for one job to finish', positiveNumber, SUBMIT_DEFAULTS.waitS)
  .action(async (options: { model: string; text?: string; file?: string; url: string; concurrency: number; bulkSize: number; waitS: number }) => {
    process.exitCode = await submit({ ...options, stdout: process.stdout, stderr: process.stderr, progress: true });
  });

program
  .command('group')
  .description('run one aggregation group over many inputs and print its reduced output as JSON')
  .requiredOption('--model <name>', 'model to run')
  .addOption(new Option('--reduce <reducer>', 'how member outputs are combined').choices(REDUCERS).makeOptionMandatory())
  .addOption(new Option('--file <path>', 'inputs, one text per line (empty lines skipped)').conflicts('images'))
  .addOption(new Option('--images <paths...>', 'input images (jpeg, png, webp, ...)'))
  .option('--output <name>', 'member output the reducer reads (default: the reducer\'s)')
  .addOption(new Option('--on-item-error <policy>', 'a failed member fails the group, or is left out').choices(ON_ITEM_ERROR))
  .option('--chunk-size <n>', 'inputs per request', positiveInteger, GROUP_DEFAULTS.chunkSize)
  .option('--png <path>', 'with --reduce boxes: where to write the picture (default group-<id>.png)')
  .option('--url <url>', 'gateway URL', GROUP_DEFAULTS.url)
  .action(
    async (options: Omit<GroupCommandOptions, 'stdout' | 'stderr' | 'progress' | 'signal'>) => {
      // The first Ctrl-C cancels the group and stops; a second one exits at once.
      const signal = trapStopSignals();
      process.exitCode = await runGroupCommand({ ...options, stdout: process.stdout, stderr: process.stderr, progress: true, signal });
    },
  );

program
  .command('keys')
  .description('manage API keys')
  .command('create')
  .description('make a new API key for a tenant: prints the key once, and the line to add to API_KEYS_FILE')
  .requiredOption('--tenant <name>', 'tenant the key belongs to ([A-Za-z0-9_.-], at most 64)')
  .option('--rate-limit-rps <n>', "the tenant's requests per second", positiveInteger)
  .option('--max-queued <n>', "the tenant's requests waiting or running per model", positiveInteger)
  .option('--callback-secret', "also make the secret that signs the tenant's callbacks")
  .action(async (options: { tenant: string; rateLimitRps?: number; maxQueued?: number; callbackSecret?: boolean }) => {
    (await import('./commands/keys.ts')).createKey({ ...options, stdout: process.stdout });
  });

// Set by the transform-cache warm-up (bin/transform-cache.js), which imports this module only for tsx to
// cache its JavaScript: the commands are defined, none runs.
if (!process.env.INFERLINE_DEFINE_ONLY) {
  try {
    await program.parseAsync(process.argv);
    // Long-running commands return once stopped; leftover handles must not keep the process alive.
    process.exit();
  } catch (error) {
    // InferlineErrors and system call failures (EADDRINUSE, EACCES, ...) are the user's to fix; others are bugs.
    const userFacing = isInferlineError(error) || (error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === 'string');
    const text = error instanceof Error ? (userFacing ? error.message : (error.stack ?? error.message)) : String(error);
    process.stderr.write(`error: ${text}\n`);
    process.exit(1);
  }
}
