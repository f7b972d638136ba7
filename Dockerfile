# syntax=docker/dockerfile:1
# grpo-cluster, CPU image: every role (`grpo coordinator | learner | worker | train | sft | eval`)
# on the WebAssembly backend with the native OpenBLAS kernels (docs in deploy/README.md).
#
#   docker build -t grpo-cluster .
#   docker run --rm grpo-cluster train --steps 20          # the arithmetic demo, in the container
#
# Stage 1 builds the native addon against the image's own Node headers and compiles TypeScript;
# stage 2 keeps only the runtime: node_modules without dev packages, dist/, the addon, and the
# OpenBLAS shared library it links (about a third of the build stage's size).
ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas-dev build-essential python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# npm install rather than npm ci, as scripts/setup.sh explains: lock files written by npm 11 lack
# other platforms' optional packages, which npm ci rejects
RUN npm install --no-audit --no-fund
COPY tsconfig.json ./
COPY native ./native
COPY scripts ./scripts
COPY src ./src
# GRPO_REQUIRE_NATIVE=1: a failed addon build fails the image instead of a 10x slower fallback
RUN GRPO_REQUIRE_NATIVE=1 bash scripts/build-native.sh \
 && node_modules/.bin/tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0-pthread \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/native/build/Release/grpo_native.node ./native/build/Release/grpo_native.node
RUN chmod +x dist/cli.js \
 && ln -s /app/dist/cli.js /usr/local/bin/grpo \
 && mkdir -p /runs \
 && chown node:node /runs
USER node
WORKDIR /runs
# coordinator (HTTP /healthz + /metrics + WebSocket), learner /metrics, worker /metrics
EXPOSE 7070 9400 9401
ENTRYPOINT ["grpo"]
CMD ["--help"]
