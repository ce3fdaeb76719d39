# Velocity's container image. Build it from a checkout after `npm install` (which builds dist/):
#   docker build -t velocity .
#   docker build --build-arg NODE_IMAGE=node:24-bookworm-slim -t velocity .     (the default base)
# Run it with your config, or beside the Docker socket to follow labelled containers:
#   docker run -d -p 80:8000 -v "$PWD/velocity.yaml:/etc/velocity/velocity.yaml:ro" velocity
#   docker run -d -p 80:8000 -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" velocity
# The demo backend from the same image (the original project's PORT and DURATION):
#   docker run -d -e PORT=9001 -e DURATION=0.2 velocity backend
# See docs/operations.md.
ARG NODE_IMAGE=node:24-bookworm-slim

# Production dependencies only, beside the code `npm install` compiled.
FROM ${NODE_IMAGE} AS build
WORKDIR /opt/velocity
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && rm -rf /root/.npm
COPY bin ./bin
COPY dist ./dist
COPY dashboard ./dashboard
COPY examples/docker.yaml /etc/velocity/velocity.yaml

# Only what runs: Node, the code and its dependencies, the default config. No npm cache, no sources.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    HOST=0.0.0.0
COPY --from=build /opt/velocity /opt/velocity
COPY --from=build /etc/velocity /etc/velocity
# A user without a login or a home; --group-add gives it the Docker socket's group when mounted.
USER 10001:10001
WORKDIR /opt/velocity
EXPOSE 8000
# The admin listener's liveness probe (docs/operations.md); node is the only tool the image needs.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/livez').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains: readiness fails, in-flight requests finish (shutdown_timeout), exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/opt/velocity/bin/velocity.js"]
CMD ["start", "--config", "/etc/velocity/velocity.yaml"]
