# A small image whose entrypoint is sy. Built in two stages: the first compiles
# better-sqlite3 from source (no prebuilt binary is downloaded) and the TypeScript,
# the second carries only the runtime files. keytar is left out: containers take their
# key from SY_MASTER_KEY (a Kubernetes Secret), never from a desktop keychain.
#
# test/e2e/dockerfile.test.ts runs the build stage's steps on a clean copy of the
# repository (there is no Docker engine on the test machine) and sy from the files the
# runtime stage copies.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Optional dependencies are installed: esbuild's platform binary (@esbuild/linux-x64) is
# one, and the bundle step needs it. No install script runs, so keytar's (a download, or a
# build against libsecret) never does; then better-sqlite3 alone is built, from source
# (--build-from-source, as better-sqlite3 documents it, stops prebuild-install from
# downloading a binary; npm 11 warns that it does not know the flag, and passes it on).
RUN npm ci --ignore-scripts \
 && npm rebuild better-sqlite3 --build-from-source
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
# The prune drops the dev tools and keytar (an optional dependency) before node_modules
# is copied into the runtime stage; then go the sources and objects of better-sqlite3's
# build (~25 MB), leaving its addon.
RUN npx tsc -p tsconfig.json \
 && node scripts/bundle.mjs \
 && npm prune --omit=dev --omit=optional \
 && cd node_modules/better-sqlite3 \
 && rm -rf deps src build/deps build/Release/obj build/Release/obj.target build/Release/.deps \
      build/Release/sqlite3.a build/Release/test_extension.node

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
