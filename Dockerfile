# One image for every role of inferline: `docker run <image> <command>`, command = start | gateway |
# worker [--models a,b] | models | submit ... (settings from the environment: REDIS_URL, PORT, ...).
#
# Model weights are not baked in. The image holds the committed model configs under /app/models;
# docker-compose.yml builds the weights once, at `up`, with its one-shot `models` service into a named
# volume shared by the gateway and the workers (see there). Run alone, `start` builds missing models
# into /app/models inside the container (this needs the npm registry).
FROM node:20-bookworm-slim

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
# Folders the unprivileged user writes: the model repository and the download cache (also the mount
# points of docker-compose.yml's volumes, which take their owner from here).
RUN mkdir -p .cache /models /cache && chown -R node:node models .cache /models /cache

USER node
ENV HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080 8001

# TypeScript runs through tsx's loader; there is no build step.
ENTRYPOINT ["node", "--import", "tsx", "packages/cli/src/main.ts"]
CMD ["start"]
