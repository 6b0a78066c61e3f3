#!/usr/bin/env bash
# Regenerates the prompt audio in en/ and zh/ from espeak-ng: 8 kHz mono
# 16-bit PCM WAV, silence trimmed at both ends. The files are committed;
# run this only to change a voice or a phrase (then commit the WAVs).
#
# Needs espeak-ng and sox (apt-get install espeak-ng sox).
# Mandarin uses the voice cmn-latn-pinyin with pinyin and tone numbers:
# the `cmn` voice with Chinese characters mispronounces most digits.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "regenerate.sh: $tool is missing (apt-get install espeak-ng sox)" >&2; exit 69; }
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# gen LOCALE VOICE NAME TEXT
gen() {
    local out="$here/$1/$3.wav"
    espeak-ng -v "$2" -s 140 -w "$tmp/raw.wav" "$4"
    # Resample to 8 kHz mono 16-bit, peak at -1 dBFS (no clipping); trim
    # leading and trailing silence. -R: repeatable (same dither every run),
    # so regenerating changes only the files whose phrase changed.
    sox -R "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out" \
        gain -n -1 silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
    echo "$out"
}

en_digits=(zero one two three four five six seven eight nine)
for d in 0 1 2 3 4 5 6 7 8 9; do gen en en-us "$d" "${en_digits[$d]}"; done
gen en en-us code_is "Your verification code is"
gen en en-us repeat "I repeat"
gen en en-us press_1 "Press 1 to hear it again"
gen en en-us goodbye "Goodbye"

# 1 is "yao1", as telephone numbers and codes are read: "yi1" is easily
# heard as "qi1" (7) on narrowband audio.
zh_digits=(ling2 yao1 er4 san1 si4 wu3 liu4 qi1 ba1 jiu3)
for d in 0 1 2 3 4 5 6 7 8 9; do gen zh cmn-latn-pinyin "$d" "${zh_digits[$d]}"; done
gen zh cmn-latn-pinyin code_is "nin2 de5 yan4 zheng4 ma3 shi4"     # 您的验证码是
gen zh cmn-latn-pinyin repeat "wo3 zai4 shuo1 yi2 bian4"          # 我再说一遍
gen zh cmn-latn-pinyin press_1 "chong2 ting1 qing3 an4 yi1"       # 重听请按一
gen zh cmn-latn-pinyin goodbye "zai4 jian4"                       # 再见
