# Trainboard in one container: web process + local executor (trainer processes) + SQLite in /data.
# The Ray image is the same file with the ray extra: `docker build --build-arg EXTRAS=onnx,ray .`;
# its `ray` command then runs a head or worker node (see docker-compose.yml, docs/deployment.md).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 TRAINBOARD_DATA_DIR=/data TRAINBOARD_HOST=0.0.0.0
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
COPY templates ./templates
COPY static ./static
ARG EXTRAS=onnx
RUN pip install --no-cache-dir -e ".[${EXTRAS}]"
VOLUME /data
EXPOSE 8000
CMD ["trainboard", "serve"]
