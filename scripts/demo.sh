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

start() {  # start a counter in its own session, output to a log file, no inherited fds
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            ((fd > 2)) && eval "exec $fd>&-"
        done
        exec setsid "demo/build/counter-$1" </dev/null >"$work/counter-$1.log" 2>&1
    ) &
    echo $!
}

for bits in 64 32; do
    pid=$(start $bits)
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
echo "demo done"
