# syntax=docker/dockerfile:1.7
# keepfix operator image: multi-stage, slim, non-root, no build tools at run time.
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY tools/k8s/versions.env tools/k8s/versions.env
RUN python -m venv /opt/keepfix \
 && /opt/keepfix/bin/pip install --upgrade pip \
 && /opt/keepfix/bin/pip wheel --wheel-dir /wheels . \
 && /opt/keepfix/bin/pip install /wheels/*.whl \
 && find /opt/keepfix -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="keepfix" \
      org.opencontainers.image.description="Keeps fixes fixed: drift rollback, regression records, admission guardrails" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/keepfix/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/keepfix /opt/keepfix
USER 65532:65532
EXPOSE 8080 9443
ENTRYPOINT ["keepfix"]
CMD ["run"]
