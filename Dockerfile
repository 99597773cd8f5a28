# One image for the worker and the query API (the command picks the role).
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY agents agents
COPY topics topics
COPY tables tables
COPY persist persist
COPY query_api query_api
COPY processing_engine processing_engine
COPY influent influent
RUN pip install --no-cache-dir .
ENV INFLUENT_STATE_DIR=/var/lib/influent
VOLUME /var/lib/influent
ENTRYPOINT ["influent"]
