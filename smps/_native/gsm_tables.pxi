# GSM 7-bit alphabets of 3GPP TS 23.038: the default alphabet (§6.2.1), its
# extension table (§6.2.1.1) and the national language locking / single shift
# tables of Annex A for Turkish (1), Spanish (2) and Portuguese (3).
#
# A locking table is 128 characters in septet order, written as eight lines of
# sixteen: each line is one column of the spec's table (0x00-0x0F, 0x10-0x1F,
# ...). Position 0x1B is the escape to the single shift table and holds "\x1b"
# only as a placeholder. A single shift table maps the septet after ESC to its
# character; codes not listed are undefined (23.038 §6.2.1.1 note 1: show the
# locking-table character instead).
#
# Verification (done while writing, by a script that compared every position):
# the default alphabet against smpp-reference.md §8.1/§8.2; the Annex A tables
# against three independent public transcriptions: Android's GsmAlphabet.java
# (sLanguageTables / sLanguageShiftTables), warthog618/sms
# encoding/gsm7/charset/{turkish,spanish,portuguese}.go and ndf-zz/gsmcodecs
# lut/*.csv (made from TS 23.038 v18.0.0). All 128 locking positions of each
# table agree in all three. The single shift tables agree except Portuguese
# 0x1F 'Ê' (A.2.3), absent from warthog618 only; the other two, including the
# v18 transcription, have it, so it is kept. CR2 (ESC 0x0D) is a control in
# the spec, not a character; it is left undefined as in Android and gsmcodecs
# (warthog618 maps it to LF), so it decodes as CR with an "unknown escape" note.

# §6.2.1 default alphabet, also the locking table for NLI 0 and for Spanish,
# which has no locking shift table (Annex A.3 lists none for it).
DEFAULT_LOCKING = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# A.3.1 Turkish locking shift: € at 0x04, ı 0x07, Ğ ğ 0x0B-0x0C, Ş ş 0x1C-0x1D,
# İ 0x40, ç 0x60; everything else as the default alphabet.
TURKISH_LOCKING = (
    "@£$¥€éùıòÇ\nĞğ\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "İABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "çabcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# A.3.3 Portuguese locking shift (no Greek capitals apart from Δ; ª º ∞ and
# the backtick at 0x7D are in it).
PORTUGUESE_LOCKING = (
    "@£$¥êéúíóç\nÔô\rÁá"
    "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"
    " !\"#º%&'()*+,-./"
    "0123456789:;<=>?"
    "ÍABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÃÕÚÜ§"
    "~abcdefghijklmno"
    "pqrstuvwxyzãõ`üà"
)

# §6.2.1.1 extension table. 0x0A is FORM FEED (page break).
DEFAULT_SINGLE_SHIFT = {
    0x0A: "\x0c", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
}  # fmt: skip

# A.2.1 Turkish single shift: the extension table plus these.
TURKISH_SINGLE_SHIFT = {
    **DEFAULT_SINGLE_SHIFT,
    0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç", 0x67: "ğ", 0x69: "ı", 0x73: "ş",
}  # fmt: skip

# A.2.2 Spanish single shift.
SPANISH_SINGLE_SHIFT = {
    **DEFAULT_SINGLE_SHIFT,
    0x09: "ç", 0x41: "Á", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú",
    0x61: "á", 0x69: "í", 0x6F: "ó", 0x75: "ú",
}  # fmt: skip

# A.2.3 Portuguese single shift (Greek capitals the locking table lacks live here).
PORTUGUESE_SINGLE_SHIFT = {
    **DEFAULT_SINGLE_SHIFT,
    0x05: "ê", 0x09: "ç", 0x0B: "Ô", 0x0C: "ô", 0x0E: "Á", 0x0F: "á",
    0x12: "Φ", 0x13: "Γ", 0x15: "Ω", 0x16: "Π", 0x17: "Ψ", 0x18: "Σ", 0x19: "Θ",
    0x1F: "Ê", 0x41: "À", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú", 0x5B: "Ã", 0x5C: "Õ",
    0x61: "Â", 0x69: "í", 0x6F: "ó", 0x75: "ú", 0x7B: "ã", 0x7C: "õ", 0x7F: "â",
}  # fmt: skip

# National language identifier (23.038 §6.2.1.2.4) -> table; None = the
# language has no such table (the default one is used, with a note).
LOCKING_TABLES = (DEFAULT_LOCKING, TURKISH_LOCKING, None, PORTUGUESE_LOCKING)
SINGLE_SHIFT_TABLES = (
    DEFAULT_SINGLE_SHIFT,
    TURKISH_SINGLE_SHIFT,
    SPANISH_SINGLE_SHIFT,
    PORTUGUESE_SINGLE_SHIFT,
)
