# The ledger CLI in a container (the docker-compose ledger services).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md cli.py ./
COPY ledger ledger
COPY projections projections
COPY schemas schemas
RUN pip install --no-cache-dir .
ENTRYPOINT ["ledger"]
