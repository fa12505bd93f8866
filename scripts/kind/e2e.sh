#!/usr/bin/env bash
# End-to-end on a kind cluster: cluster up, build + load the two images, helm install (dev stack on),
# training Job, InferenceService ready, V1 and V2 requests through the gateway, a canary step,
# helm test. Needs docker (with a running daemon) and kind; without them it SKIPS (exit 0)
# and says why. Set HOUSING_E2E_REQUIRED=1 to fail instead of skip.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if reason="$(docker_and_kind_missing_reason)"; then
  if [[ "${HOUSING_E2E_REQUIRED:-0}" == "1" ]]; then
    die "e2e cannot run: ${reason}"
  fi
  echo "SKIPPED: kind end-to-end test not run: ${reason}." >&2
  echo "SKIPPED: it needs docker (daemon running) and kind; see README 'Run it on kind'." >&2
  exit 0
fi

MODE="${HOUSING_KSERVE_MODE:-Standard}"
SERVING_IMAGE="housing-serving:e2e"     # the Dockerfile's serving target: the InferenceService
TRAINING_IMAGE="housing-training:e2e"   # its training target: the training Job, the dev stack
CHART="${REPO_ROOT}/charts/housing"
MODEL="$(sed -n 's/^  name: \([a-z0-9-]*\)$/\1/p' "${CHART}/values.yaml" | sed -n 1p)"

bash "${REPO_ROOT}/scripts/kind/cluster-up.sh" $([[ "$MODE" == "Knative" ]] && echo --serverless)

log "building ${SERVING_IMAGE} and ${TRAINING_IMAGE} and loading them into kind"
docker build --target serving -t "${SERVING_IMAGE}" "${REPO_ROOT}"
docker build --target training -t "${TRAINING_IMAGE}" "${REPO_ROOT}"
kind load docker-image "${SERVING_IMAGE}" "${TRAINING_IMAGE}" --name "${CLUSTER_NAME}"

# Standard mode: the chart's Gateway and routes (gateway.enabled), served by traefik
# (scripts/kind/gateway.sh); KServe creates no route of its own there. Knative: Kourier.
gateway=(); [[ "$MODE" == "Standard" ]] && gateway=(--set gateway.enabled=true)
log "helm install ${RELEASE} (mode ${MODE})"
h upgrade --install "${RELEASE}" "${CHART}" -n "${NAMESPACE}" --create-namespace \
  --set image.repository=housing-serving --set image.tag=e2e --set image.pullPolicy=Never \
  --set training.image.repository=housing-training --set training.image.tag=e2e \
  --set kserve.deploymentMode="${MODE}" --set training.args='{--dataset,ames,--fast}' ${gateway[@]+"${gateway[@]}"}

log "waiting for the training Job"
job="$(k -n "${NAMESPACE}" get jobs -l app.kubernetes.io/component=training -o name | tail -n1)"
k -n "${NAMESPACE}" wait --for=condition=Complete "${job}" --timeout=15m

log "waiting for the InferenceService"
k -n "${NAMESPACE}" wait --for=condition=Ready "inferenceservice/${RELEASE}" --timeout=10m
if [[ "$MODE" == "Knative" ]]; then
  host="$(k -n "${NAMESPACE}" get inferenceservice "${RELEASE}" -o jsonpath='{.status.url}' | cut -d/ -f3)"
  port=8081
else  # the chart's route has no hostnames: any Host reaches it
  host=localhost port=8080
  k -n "${NAMESPACE}" wait --for=jsonpath='{.status.parents[0].conditions[?(@.type=="Accepted")].status}'=True \
    "httproute/${RELEASE}" --timeout=2m
fi
base="http://127.0.0.1:${port}"

log "V1 predict through the gateway (Host: ${host})"
curl -fsS -H "Host: ${host}" -H 'Content-Type: application/json' \
  "${base}/v1/models/${MODEL}:predict" -d @"${CHART}/files/v1-request.json"
echo
log "V2 metadata and readiness through the gateway"
curl -fsS -H "Host: ${host}" "${base}/v2/models/${MODEL}"
echo
curl -fsS -H "Host: ${host}" "${base}/v2/models/${MODEL}/ready"
echo
log "V2 infer through the gateway"
curl -fsS -H "Host: ${host}" -H 'Content-Type: application/json' \
  "${base}/v2/models/${MODEL}/infer" -d @"${CHART}/files/v2-request.json"
echo

log "canary step: 10% to the same bundle under the challenger name"
champion="$(h -n "${NAMESPACE}" get values "${RELEASE}" -a -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["predictor"]["storageUri"])')"
h upgrade "${RELEASE}" "${CHART}" -n "${NAMESPACE}" --reuse-values \
  --set canary.enabled=true --set canary.storageUri="${champion}" --set canary.trafficPercent=10
k -n "${NAMESPACE}" wait --for=condition=Ready "inferenceservice/${RELEASE}" --timeout=10m
# The API server prunes fields its CRD does not know: check the canary survived admission.
if [[ "$MODE" == "Knative" ]]; then
  got="$(k -n "${NAMESPACE}" get inferenceservice "${RELEASE}" -o jsonpath='{.spec.predictor.canaryTrafficPercent}')"
else
  got="$(k -n "${NAMESPACE}" get inferenceservice "${RELEASE}" -o jsonpath='{.spec.canary[0].trafficPercent}')"
fi
[[ "$got" == "10" ]] || die "canary not in the stored InferenceService (got '${got}'): does this KServe CRD support it?"
for _ in $(seq 1 20); do
  curl -fsS -o /dev/null -H "Host: ${host}" -H 'Content-Type: application/json' \
    "${base}/v1/models/${MODEL}:predict" -d @"${CHART}/files/v1-request.json"
done

log "helm test"
h test "${RELEASE}" -n "${NAMESPACE}" --logs
log "e2e passed"
