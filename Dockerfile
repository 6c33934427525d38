# syntax=docker/dockerfile:1
# failover-router as a container: built with Bun into one self-contained executable, run on a distroless
# base (glibc, CA certificates, no shell, no package manager) as a non-root user. See docs/deploy.md.
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t failover-router .
#   docker run -p 8000:8000 --env-file keys.env --stop-timeout 40 \
#     -v "$PWD/config.yaml:/etc/failover-router/config.yaml:ro" failover-router

ARG BUN_VERSION=1.4.5

FROM oven/bun:${BUN_VERSION} AS build
WORKDIR /src
# runtime dependencies only, at the versions of package-lock.json (Bun migrates it to its own lockfile)
COPY package.json package-lock.json ./
RUN bun install --production --frozen-lockfile --ignore-scripts
COPY src ./src
COPY scripts/build ./scripts/build
# .git is not in the build context: the commit comes in as a build argument
ARG GIT_COMMIT=unknown
RUN GIT_COMMIT="${GIT_COMMIT}" bash scripts/build && ./dist/failover-router --version

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/failover-router /usr/local/bin/failover-router
# a default config (mount your own over it); keys come from the environment (${VAR} in the file)
COPY config.yaml /etc/failover-router/config.yaml
ENV ROUTER_CONFIG=/etc/failover-router/config.yaml
USER nonroot:nonroot
WORKDIR /home/nonroot
EXPOSE 8000
# SIGTERM drains in-flight requests and streams (server.shutdown_timeout_seconds, default 30): give
# `docker stop` more than that (--stop-timeout 40 / compose stop_grace_period: 40s)
STOPSIGNAL SIGTERM
# no curl in the image: the binary probes its own /health (port from ROUTER_CONFIG / $PORT)
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/failover-router", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/failover-router"]
CMD ["serve"]
