#!/bin/bash
# The demo: a 64-bit and a 32-bit counter run, are checkpointed (and killed), then restored;
# each carries on counting from where it stopped, with the same PID.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -s -C demo
torpor=.venv/bin/torpor
work=$(mktemp -d)
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

start() {  # start LOG PROGRAM [ARGS]: in its own session, output to LOG, no inherited fds
    local log=$1
    shift
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            ((fd > 2)) && eval "exec $fd>&-"
        done
        exec setsid "$@" </dev/null >"$work/$log" 2>&1
    ) &
    echo $!
}

for bits in 64 32; do
    pid=$(start "counter-$bits.log" "demo/build/counter-$bits")
    pids+=("$pid")
    echo "started the $bits-bit counter as PID $pid"
done
sleep 2
for bits in 64 32; do
    echo "--- $bits-bit counter, before the checkpoint:"
    tail -n 2 "$work/counter-$bits.log"
done

i=0
for bits in 64 32; do
    pid=${pids[$i]}; i=$((i + 1))
    mkdir "$work/images-$bits"
    $torpor dump -t "$pid" -D "$work/images-$bits"
    echo "dumped the $bits-bit counter (PID $pid): it is gone"
    $torpor show -D "$work/images-$bits" | sed -n 1,3p
done
while kill -0 "${pids[@]}" 2>/dev/null; do sleep 0.1; done  # until the originals are reaped
echo "--- both frozen; waiting 2 s"
sleep 2

for bits in 64 32; do
    $torpor restore -d -D "$work/images-$bits" --pidfile "$work/pid-$bits"
    echo "restored the $bits-bit counter as PID $(cat "$work/pid-$bits")"
done
sleep 1.5
for bits in 64 32; do
    echo "--- $bits-bit counter, after the restore (the tick count carries on):"
    tail -n 3 "$work/counter-$bits.log"
done
pids=("$(cat "$work/pid-64")" "$(cat "$work/pid-32")")

echo "--- a mixed tree: a 64-bit counter whose child is a 32-bit counter, dumped as one"
tree=$(start tree.log demo/build/counter-64 demo/build/counter-32)
pids+=("$tree")
sleep 1.5
child=$(cat /proc/$tree/task/$tree/children)
child=${child%% *}
pids+=("$child")
mkdir "$work/images-tree"
$torpor dump -t "$tree" -D "$work/images-tree"
echo "dumped the tree of PID $tree (parent $tree, child $child): both are gone"
$torpor show -D "$work/images-tree" | grep '^PID'
while kill -0 "$tree" "$child" 2>/dev/null; do sleep 0.1; done
$torpor restore -d -D "$work/images-tree" --pidfile "$work/pid-tree"
child_now=$(cat /proc/$tree/task/$tree/children)
echo "restored the tree: PID $(cat "$work/pid-tree"), its child ${child_now%% *}"
sleep 1.5
echo "--- the tree, after the restore (both tick counts carry on):"
tail -n 4 "$work/tree.log"
echo "demo done"
