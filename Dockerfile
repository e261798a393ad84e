# A small image whose entrypoint is sy. Built in two stages: the first compiles
# better-sqlite3 from source (no prebuilt binary is downloaded) and the TypeScript,
# the second carries only the runtime files. keytar is left out: containers take their
# key from SY_MASTER_KEY (a Kubernetes Secret), never from a desktop keychain.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --omit=optional \
 && npm rebuild better-sqlite3
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
RUN npx tsc -p tsconfig.json \
 && node scripts/bundle.mjs \
 && npm prune --omit=dev --omit=optional

FROM node:20-bookworm-slim
ENV NODE_ENV=production SY_HOME=/var/lib/sy
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY man ./man
RUN ln -s /app/bin/sy /usr/local/bin/sy \
 && mkdir -p /var/lib/sy && chown node:node /var/lib/sy && chmod 0700 /var/lib/sy
USER node
ENTRYPOINT ["sy"]
CMD ["--help"]
