#!/usr/bin/env python3
"""How recordings sound at each Opus complexity and bitrate: PESQ scores.

Makes three voices of one paragraph with espeak-ng, sends each through G.711
as a call would (sox), then through the recorder's own Opus encoder and back
(`callvault-bench-recorder round-trip`), and scores the result against the
G.711 speech with ITU-T P.862 narrowband PESQ (MOS-LQO, 1 to 4.5).

Needs espeak-ng and sox (Debian), and `pip install pesq numpy`.
Run from the repository root after
`cargo build --release -p callvault-bench-recorder`.
"""

import argparse
import os
import subprocess
import tempfile
import wave

import numpy as np
from pesq import pesq

PARAGRAPH = (
    "Good morning, this is the surgery. Your blood test results are back and the "
    "doctor would like to see you next week. Please ring us on Monday to book an "
    "appointment, and bring your repeat prescription form with you."
)
VOICES = ["en-gb", "en-gb+f3", "en-us+m3"]
RATE = 8000


def run(*command, stdin=None):
    return subprocess.run(command, input=stdin, capture_output=True, check=True).stdout


def g711_speech(directory, voice):
    """The paragraph in one voice, at 8 kHz, after a G.711 round trip."""
    spoken = os.path.join(directory, "spoken.wav")
    run("espeak-ng", "-v", voice, "-s", "150", "-w", spoken, PARAGRAPH)
    ulaw = run("sox", spoken, "-r", str(RATE), "-c", "1", "-t", "ul", "-")
    return np.frombuffer(
        run("sox", "-t", "ul", "-r", str(RATE), "-c", "1", "-", "-t", "s16", "-", stdin=ulaw),
        dtype=np.int16,
    )


def score(binary, speech, kbps, complexity):
    decoded = run(
        binary, "round-trip", "--kbps", str(kbps), "--complexity", str(complexity),
        stdin=speech.tobytes(),
    )
    decoded = np.frombuffer(decoded, dtype=np.int16)
    length = min(len(speech), len(decoded))
    reference = speech[:length].astype(np.float32)
    return pesq(RATE, reference, decoded[:length].astype(np.float32), "nb")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/callvault-bench-recorder")
    parser.add_argument("--kbps", default="12,16,20,24")
    parser.add_argument("--complexities", default="0,1,2,3,5,10")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        speeches = [g711_speech(directory, voice) for voice in VOICES]
    print("| kbit/s per channel | complexity | PESQ, " + ", ".join(VOICES) + " | mean |")
    print("| --- | --- | --- | --- |")
    for kbps in options.kbps.split(","):
        for complexity in options.complexities.split(","):
            scores = [score(options.binary, s, kbps, complexity) for s in speeches]
            each = ", ".join(f"{value:.2f}" for value in scores)
            print(f"| {kbps} | {complexity} | {each} | {np.mean(scores):.2f} |", flush=True)


if __name__ == "__main__":
    main()
