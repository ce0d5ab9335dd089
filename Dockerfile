# postvault's gateway, worker and beat image (docker-compose.yml runs it three ways).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m venv /opt/postvault \
 && /opt/postvault/bin/pip install ".[postgres,redis]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/postvault --create-home postvault
COPY --from=build /opt/postvault /opt/postvault
ENV PATH=/opt/postvault/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    POSTVAULT_DATA_DIR=/var/lib/postvault
USER postvault
WORKDIR /var/lib/postvault
VOLUME ["/var/lib/postvault"]
EXPOSE 2525
CMD ["postvault", "serve"]
