# Trainboard in one container: web process + local executor (trainer processes) + SQLite in /data.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 TRAINBOARD_DATA_DIR=/data TRAINBOARD_HOST=0.0.0.0
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
COPY templates ./templates
COPY static ./static
RUN pip install --no-cache-dir -e ".[onnx]"
VOLUME /data
EXPOSE 8000
CMD ["trainboard", "serve"]
