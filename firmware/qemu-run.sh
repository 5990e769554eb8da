#!/usr/bin/env bash
# Cargo's runner for every core (see .cargo/config.toml): runs the firmware ELF in the QEMU
# machine of MLP_CORE (by default the core its target implies, as build.rs picks), output
# through semihosting, `-icount shift=0` so virtual time counts instructions (1 ns each) and
# SysTick measures them.
set -euo pipefail
elf=$1
shift
core=${MLP_CORE:-}
if [ -z "$core" ]; then
    case "$elf" in
        */thumbv6m-none-eabi/*) core=m0 ;;
        */thumbv7m-none-eabi/*) core=m3 ;;
        */thumbv8m.main-none-eabihf/*) core=m33 ;;
        *) core=m4 ;;
    esac
fi
case "$core" in
    m0) machine=(-machine microbit) ;;
    m3) machine=(-machine mps2-an385 -cpu cortex-m3) ;;
    m4) machine=(-machine mps2-an386 -cpu cortex-m4) ;;
    m7) machine=(-machine mps2-an500 -cpu cortex-m7) ;;
    m33) machine=(-machine mps2-an505 -cpu cortex-m33) ;;
    m55) machine=(-machine mps3-an547 -cpu cortex-m55) ;;
    *) echo "qemu-run.sh: unknown MLP_CORE=$core (m0, m3, m4, m7, m33, m55)" >&2; exit 2 ;;
esac
exec qemu-system-arm "${machine[@]}" -nographic -semihosting-config enable=on,target=native \
    -icount shift=0 -kernel "$elf" "$@"
