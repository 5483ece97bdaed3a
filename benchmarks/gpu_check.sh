#!/usr/bin/env bash
# The GPU check: fedleak's attack pool on one GPU in one run, every figure written under $OUT.
#
#   OUT=DIR bash benchmarks/gpu_check.sh [--tiny] [--budget SECONDS] [--data-root MNIST_DIR]
#
# Stages, in this order; each gets at most its cap and what is left of the budget (default 480 s,
# so that a rerun fits in the device's 15 minutes): when time runs short the tail is cut, never
# the head, and every stage's outcome is recorded either way.
#   env  the machine: GPU, driver, Python, torch, flwr, ray (carried wheels installed if needed)
#   a    the batching, runner, attack-contract and Ray-pool tests with the attacks on the device
#        (batched = one by one; the caller's model never moved; the pool's workers on GPU shares)
#   b    attack throughput: DLG and Inverting Gradients at 64, 256, 8, 1 concurrent attacks (the
#        targets' counts first), batched against one by one (capped at 16), GPU use sampled
#   c    a round with 2 GPU attack workers: plain FedAvg, capture, capture + dispatch, and full
#        attacks running beside the rounds
#   d    paper sizes as far as the time allows: Inverting Gradients on ResNet-18 (CIFAR stem) at
#        24,000 iterations for 2 images (one stacked run), KKT's steps/s at Haim et al.'s size
#        (500 images, 784-1000-1000-1), GRNN at batch 64
# Under $OUT: stages.jsonl (one line per stage: status, seconds), a.xml (JUnit), b.jsonl, c.jsonl,
# d.jsonl (the benchmarks' rows), log.txt (everything printed), gpu_check.json and gpu_check.md.
# --tiny: every stage on the CPU at toy sizes, in 70-75 s on 2 cores (tests/test_gpu_check.py).
# The GPU image lacks flwr, ray and more: benchmarks/gpu_prepare.py puts them, as wheels, and
# the MNIST files in .gpu/, which the device call carries.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

tiny=0 budget=480 data_root=
while (($#)); do
    case $1 in
        --tiny) tiny=1 ;;
        --budget) budget=${2:?--budget needs seconds}; shift ;;
        --data-root) data_root=${2:?--data-root needs a folder}; shift ;;
        *) echo "gpu_check.sh: unknown argument '$1' (--tiny, --budget SECONDS, --data-root DIR)" >&2; exit 2 ;;
    esac
    shift
done
[[ $budget =~ ^[0-9]+$ ]] || { echo "gpu_check.sh: --budget must be whole seconds, got '$budget'" >&2; exit 2; }
if [[ -z $data_root ]]; then
    for candidate in ../shared/data/mnist .gpu/mnist; do
        [[ -f $candidate/t10k-images-idx3-ubyte.gz ]] && { data_root=$candidate; break; }
    done
fi
[[ -f ${data_root:-/nonexistent}/t10k-images-idx3-ubyte.gz ]] || {
    echo "gpu_check.sh: no MNIST t10k files (--data-root, ../shared/data/mnist or .gpu/mnist from gpu_prepare.py)" >&2
    exit 2
}
data_root=$(cd "$data_root" && pwd)
OUT=${OUT:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/gpu-check-work.XXXXXX)
trap 'rm -rf "$work"' EXIT
log=$OUT/log.txt
: > "$log"
: > "$OUT/stages.jsonl"
rm -f "$OUT"/{a.xml,b.jsonl,c.jsonl,d.jsonl,gpu_check.json,gpu_check.md}  # a rerun into $OUT reports itself only
start=$SECONDS
reserve=15  # seconds kept for the report

python=python3
if ! $python -c "import flwr, ray, pydantic, opacus" 2> /dev/null; then
    if compgen -G ".gpu/wheels/*.whl" > /dev/null; then
        $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$work/site" .gpu/wheels/*.whl >> "$log" 2>&1 || { echo "gpu_check.sh: installing .gpu/wheels failed (log.txt)" >&2; exit 1; }
        export PYTHONPATH=$work/site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "gpu_check.sh: flwr, ray, pydantic or opacus missing and no .gpu/wheels (benchmarks/gpu_prepare.py)" >&2
        exit 2
    fi
fi
export PYTHONPATH=$repo:$repo/benchmarks${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

if ((tiny)); then
    device=cpu
elif $python -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>> "$log"; then
    device=cuda
else
    echo "gpu_check.sh: torch sees no CUDA device here (--tiny runs the check on the CPU)" >&2
    exit 2
fi

left() { echo $((budget - reserve - (SECONDS - start))); }

# stage NAME CAP NEED COMMAND...: run COMMAND for at most CAP seconds and what is left, or skip it
# when that is under NEED (what it cannot do without); record the outcome either way.
stage() {
    local name=$1 cap=$2 need=$3 limit status rc began
    shift 3
    limit=$(left)
    ((cap < limit)) && limit=$cap
    if ((limit < need)); then
        echo "{\"stage\": \"$name\", \"status\": \"skipped\", \"reason\": \"too little time: $((limit > 0 ? limit : 0)) s of the $need s it needs\"}" \
            >> "$OUT/stages.jsonl"
        return
    fi
    echo "== stage $name (at most ${limit} s): $*" | tee -a "$log"
    began=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124 | 137) status="timed out" ;; *) status=failed ;; esac
    echo "{\"stage\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $((SECONDS - began)), \"limit_s\": $limit}" \
        >> "$OUT/stages.jsonl"
    echo "== stage $name: $status after $((SECONDS - began)) s" | tee -a "$log"
}

timeout 60 $python benchmarks/gpu_check_report.py env --device "$device" --tiny "$tiny" >> "$OUT/stages.jsonl" 2>> "$log" \
    || echo "{\"stage\": \"env\", \"status\": \"failed\", \"device\": \"$device\", \"tiny\": $((tiny))}" >> "$OUT/stages.jsonl"

mnist=(--data-root "$data_root")
if ((tiny)); then
    tests=(tests/test_batching.py::test_a_batch_gives_what_each_attack_gives_alone
           tests/test_attack_contract.py::test_an_attack_moving_to_another_device_moves_a_copy -k "idlg")
    throughput=(--concurrent 1,2 --alone-cap 1 --set dlg.iterations=2 --set inverting.iterations=2)
    round=(--clients 2 --rounds 2 --repeats 1 --arms fedavg,dispatch)
    resnet=(--iterations 2) kkt=(--n 4 --widths 8,8 --train-epochs 5 --iterations 3) grnn=(--batch-sizes 2 --set iterations=2)
    caps=(60 60 60)
else
    tests=(tests/test_batching.py tests/test_runner.py tests/test_attack_contract.py tests/test_ray_runner.py)
    throughput=(--concurrent 64,256,8,1 --alone-cap 16)
    round=(--clients 8 --rounds 6 --repeats 2 --arms fedavg,capture,dispatch,busy --local-steps 20 --batch-size 16)
    resnet=(--iterations 24000) kkt=(--n 500 --widths 1000,1000 --train-epochs 200 --threads 16) grnn=(--batch-sizes 64)
    caps=(120 150 120)
fi

stage a "${caps[0]}" 10 env FEDLEAK_TEST_DEVICE=$device $python -m pytest -q -p no:cacheprovider -p no:warnings \
    --junitxml="$OUT/a.xml" "${tests[@]}"
stage b "${caps[1]}" 10 $python benchmarks/attack_throughput.py attacks --device "$device" "${throughput[@]}" "${mnist[@]}" \
    --jsonl "$OUT/b.jsonl"
stage c "${caps[2]}" 20 $python benchmarks/attack_throughput.py round --workers 2 "${round[@]}" "${mnist[@]}" \
    --out "$work/runs" --jsonl "$OUT/c.jsonl"

# d: of what is left, Inverting Gradients gets ~55 %, KKT ~15 %, GRNN the rest. Each attack's own time
# budget is its stage's limit less the set-up its process needs around it (model, data, scoring: ~20 s),
# and a stage whose share cannot hold that set-up and a little attack is skipped, not started to die.
setup=20 need=30
d_left=$(left)
budget_of() { echo $(($1 - setup)); }
inverting=$((d_left * 55 / 100)) kkt_cap=$((d_left * 15 / 100))
stage d-inverting "$inverting" "$need" $python benchmarks/resnet_inverting.py "${resnet[@]}" --images 2 --batches 0 \
    --one-model --device "$device" --time-budget "$(budget_of "$inverting")" --jsonl "$OUT/d.jsonl"
kkt_cap=$(( kkt_cap < $(left) ? kkt_cap : $(left) ))
stage d-kkt "$kkt_cap" "$need" $python benchmarks/theory_attacks.py kkt "${kkt[@]}" "${mnist[@]}" --device "$device" \
    --time-budget "$(budget_of "$kkt_cap")" --jsonl "$OUT/d.jsonl"
grnn_cap=$(left)
stage d-grnn "$grnn_cap" "$need" $python benchmarks/attacks_mnist.py --init default --attacks grnn "${grnn[@]}" --trials 1 \
    --fedavg-steps "" --set "device=$device" --time-budget "$(budget_of "$grnn_cap")" "${mnist[@]}" --jsonl "$OUT/d.jsonl"

$python benchmarks/gpu_check_report.py report "$OUT" >> "$log" 2>&1 || echo "gpu_check.sh: the report failed (log.txt)" >&2
echo "gpu_check.sh: $((SECONDS - start)) s; $OUT/gpu_check.md"
