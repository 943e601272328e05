# One image for every role of inferline: `docker run <image> <command>`, command = start | gateway |
# worker [--models a,b] | aggregator | models | submit ... (settings from the environment: REDIS_URL,
# PORT, METRICS_PORT, ...).
#
# Model weights are not baked in. The image holds the committed model configs under /app/models;
# docker-compose.yml and the Kubernetes Job (infra/k8s/base/models.yaml) build the weights once into a
# volume shared by the gateway and the workers. Run alone, the default command `start` runs everything
# in the container: it builds the missing models into /app/models (this needs the npm registry), starts
# the image's redis-server unless REDIS_URL is set (data in /app/.inferline, a volume to keep it:
# `-v inferline-state:/app/.inferline`), one gateway, WORKERS workers and one aggregator:
#   docker run -p 127.0.0.1:8080:8080 inferline:local
FROM node:20-bookworm-slim

# redis-server for `start` without REDIS_URL (the roles alone never start one).
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, so a source change does not reinstall them. The workspaces' package.json files
# are needed for `npm ci` to link @inferline/*.
COPY package.json package-lock.json ./
COPY packages/shared/package.json packages/shared/
COPY packages/worker/package.json packages/worker/
COPY packages/gateway/package.json packages/gateway/
COPY packages/cli/package.json packages/cli/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY . .
# Folders the unprivileged user writes: the model repository, versions staged by `inferline models`,
# the download cache, the private Redis of `start` (STATE_DIR), and the mount points of the compose
# and Kubernetes volumes (a named volume takes its owner from the image's folder).
RUN mkdir -p .cache .inferline staging /models /cache \
    && chown -R node:node models .cache .inferline staging /models /cache

USER node
# TypeScript runs through tsx's loader; there is no build step. tsx's transform cache is filled here, as
# the user the roles run as, so that no role starts an esbuild service (bin/transform-cache.js).
RUN node bin/inferline.js warm-cache
ENV HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080 8001

ENTRYPOINT ["node", "bin/inferline.js"]
CMD ["start"]
