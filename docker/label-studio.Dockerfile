# Label Studio, the version and packages the tests run (locks/label-studio.txt, installed by the same script), as an
# image: for machines that cannot pull heartexlabs/label-studio, such as the container trial's
# (scripts/docker-trial.sh tags it with that name so that compose.yaml runs it). Not the project's image.
#
#   docker build -f docker/label-studio.Dockerfile --build-arg PYTHON_IMAGE=... -t classie-label-studio .
#
# Like the official image: listens on 8080 on every interface, keeps its data in /label-studio/data, runs as uid 1001.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
FROM ${PYTHON_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt
COPY locks/build.txt locks/label-studio.txt locks/
COPY scripts/setup-label-studio.sh scripts/setup-label-studio.sh
RUN PYTHON=/usr/local/bin/python3.11 bash scripts/setup-label-studio.sh /opt/label-studio \
 && rm -f /opt/label-studio/pip-install.log \
 && groupadd --system --gid 1001 labelstudio \
 && useradd --system --uid 1001 --gid labelstudio --home-dir /label-studio --shell /usr/sbin/nologin labelstudio \
 && mkdir -p /label-studio/data \
 && chown -R 1001:1001 /label-studio
ENV PATH=/opt/label-studio/bin:$PATH \
    HOME=/label-studio \
    LABEL_STUDIO_BASE_DATA_DIR=/label-studio/data \
    PYTHONUNBUFFERED=1
WORKDIR /label-studio
USER 1001:1001
VOLUME ["/label-studio/data"]
EXPOSE 8080
CMD ["label-studio", "start", "--no-browser", "--internal-host", "0.0.0.0", "--port", "8080"]
