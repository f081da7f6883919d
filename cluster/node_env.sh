# Sourced first by every interactive shell on a cluster node (ray_cluster.yaml puts it at the top
# of ~/.bashrc; Ray runs its setup, start and `ray exec` commands in such a shell, and the Ray
# processes started there pass this environment on to every trial).
# Secrets are read from AWS SSM Parameter Store with the node's instance profile into this
# shell's environment — never written to a file on the node or onto a command line.
export PATH="$HOME/venv/bin:$PATH"
export RAY_AUTH_MODE=token  # every node and the driver: Ray's token auth (~/.ray/auth_token)
_remedies_ssm() {
    aws ssm get-parameter --name "$1" --with-decryption --query Parameter.Value --output text
}
[ -n "${REMEDIES_BUCKET:-}" ] || REMEDIES_BUCKET="$(_remedies_ssm /remedies/bucket)"
[ -n "${MLFLOW_TRACKING_PASSWORD:-}" ] ||
    MLFLOW_TRACKING_PASSWORD="$(_remedies_ssm /remedies/mlflow-password)"
export REMEDIES_BUCKET MLFLOW_TRACKING_PASSWORD MLFLOW_TRACKING_USERNAME=admin
