"""Romanization: how one label's language reads a script in Latin letters.

A scheme turns the letters of one script into Latin letters as one language
spells them (:func:`romanize`); what is not of that script is left for :func:`~namesclf.text.to_ascii`
(anyascii), which stays the fallback for every script and scheme not listed here. Schemes:

- ``ko``: Hangul by Revised Romanization, family name first; a family name takes its usual spelling
  (Kim, Lee, Park: :data:`KOREAN_FAMILY_NAMES`), and a longer word is family name + given name.
- ``ja``: kana by Hepburn without long-vowel marks (``さとう`` -> ``sato``, as passports and the
  corpora write it); kanji by a committed table of common surnames (``japanese_surnames.csv``),
  else by each character's usual reading in surnames (:data:`KANJI_READINGS`), else pinyin.
- ``zh``: Han characters as pinyin (anyascii), each run read as one word.
- ``ru``, ``uk``, ``be``, ``bg``, ``mk``, ``sr``: Cyrillic per language (Ukrainian ``г`` -> ``h``,
  ``и`` -> ``y``; Bulgarian ``щ`` -> ``sht``; Serbian and Macedonian onto their official Latin);
  not in the label table, which reads Cyrillic by anyascii (:data:`CYRILLIC_PER_LANGUAGE` says why).
- ``el``: Greek close to ELOT 743 (``ου`` -> ``ou``, ``β`` -> ``v``).

No romanization library is used: for Japanese, pykakasi is GPL and cutlet needs MeCab with a
dictionary of tens of megabytes, and the readings a surname classifier needs (Hangul is
algorithmic, kana a syllable table, kanji surnames a short list) fit in the small tables here.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import unicodedata
from importlib import resources

from anyascii import anyascii

from namesclf.data.scripts import script_of


def _words(text: str) -> list[str]:
    """The words of a table written as one string (keeps the tables short to read)."""
    return text.split()


# ----------------------------------------------------------------------------- Korean

_INITIALS = ["g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h"]
_MEDIALS = ["a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi",
            "yu", "eu", "ui", "i"]
#: A final consonant before a consonant or at the end of a word, and before a vowel (the letter's
#: value carries over to the next syllable, as Revised Romanization writes it).
_FINALS = ["", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m", "p", "p", "t", "t",
           "ng", "t", "t", "k", "t", "p", "t"]
_FINALS_BEFORE_VOWEL = ["", "g", "kk", "ks", "n", "nj", "nh", "d", "r", "lg", "lm", "lb", "ls", "lt", "lp", "lh",
                        "m", "b", "bs", "s", "ss", "ng", "j", "ch", "k", "t", "p", "h"]
_IEUNG = 11  # the silent initial: the syllable starts with its vowel
_RIEUL_FINAL = 8

#: Family names as Koreans spell them in Latin letters (passports, the corpora), not as Revised
#: Romanization would (``김`` is Kim, not Gim): the common spellings of Wikipedia's "List of Korean
#: family names".
KOREAN_FAMILY_NAMES = dict(item.split(":") for item in _words(
    "김:Kim 이:Lee 박:Park 최:Choi 정:Jung 강:Kang 조:Cho 윤:Yoon 장:Jang 임:Lim 한:Han 오:Oh 서:Seo 신:Shin "
    "권:Kwon 황:Hwang 안:Ahn 송:Song 류:Ryu 유:Yoo 전:Jeon 홍:Hong 고:Ko 문:Moon 양:Yang 손:Son 배:Bae 백:Baek "
    "허:Heo 남:Nam 심:Shim 노:Noh 하:Ha 곽:Kwak 성:Sung 차:Cha 주:Joo 우:Woo 구:Koo 민:Min 진:Jin 지:Ji 엄:Um "
    "채:Chae 원:Won 천:Chun 방:Bang 공:Kong 현:Hyun 함:Ham 변:Byun 염:Yeom 여:Yeo 추:Choo 도:Do 소:So 석:Seok "
    "선:Sun 설:Seol 마:Ma 길:Gil 연:Yeon 위:Wi 표:Pyo 명:Myung 기:Ki 반:Ban 라:Ra 나:Na 왕:Wang 금:Keum 옥:Ok "
    "육:Yook 인:In 맹:Maeng 제:Je 모:Mo 탁:Tak 국:Kook 은:Eun 편:Pyun 용:Yong 예:Ye 경:Kyung 봉:Bong 사:Sa "
    "부:Boo 가:Ka 복:Bok 태:Tae 목:Mok 형:Hyung 계:Kye 피:Pi 두:Doo 감:Kam 빈:Bin 동:Dong 호:Ho 범:Beom "
    "승:Seung 상:Sang 시:Si 단:Dan 당:Dang 남궁:Namgoong 황보:Hwangbo 제갈:Jegal 선우:Sunwoo 독고:Dokgo "
    "사공:Sagong 서문:Seomun"))
_COMPOUND_FAMILY = {k for k in KOREAN_FAMILY_NAMES if len(k) == 2}


def _hangul_rr(word: str) -> str:
    """Revised Romanization of Hangul syllables, letter by letter (no sound changes across
    syllables, as the rules ask for personal names), ``ㄹㄹ`` as ``ll``."""
    jamo = []
    for ch in word:
        code = ord(ch) - 0xAC00
        jamo.append((code // 588, (code % 588) // 28, code % 28) if 0 <= code < 11172 else ch)
    out = []
    for i, syllable in enumerate(jamo):
        if isinstance(syllable, str):
            out.append(syllable)
            continue
        initial, medial, final = syllable
        previous = jamo[i - 1] if i else None
        start = _INITIALS[initial]
        if initial == 5 and isinstance(previous, tuple) and previous[2] == _RIEUL_FINAL:
            start = "l"
        following = jamo[i + 1] if i + 1 < len(jamo) else None
        before_vowel = isinstance(following, tuple) and following[0] == _IEUNG
        end = (_FINALS_BEFORE_VOWEL if before_vowel else _FINALS)[final]
        out.append(start + _MEDIALS[medial] + end)
    return "".join(out)


def romanize_korean(word: str) -> str:
    """A Hangul word as Koreans write it in Latin letters, family name first: a family name on its
    own takes its usual spelling (``김`` -> ``Kim``, ``남궁`` -> ``Namgoong``); a longer word is read
    as family name and given name (``김민준`` -> ``Kim Minjun``), the way Korean writes full names."""
    if word in KOREAN_FAMILY_NAMES:
        return KOREAN_FAMILY_NAMES[word]
    cut = 2 if len(word) >= 3 and word[:2] in _COMPOUND_FAMILY else 1
    family, given = word[:cut], word[cut:]
    head = KOREAN_FAMILY_NAMES.get(family) or _hangul_rr(family).capitalize()
    return head + (" " + _hangul_rr(given).capitalize() if given else "")


# ----------------------------------------------------------------------------- Japanese

_KANA = dict(zip(
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわゐゑをん"
    "がぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽぁぃぅぇぉゔ",
    _words("a i u e o ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho ma mi mu me mo "
     "ya yu yo ra ri ru re ro wa i e o n ga gi gu ge go za ji zu ze zo da ji zu de do ba bi bu be bo "
     "pa pi pu pe po a i u e o vu"), strict=True))
_SMALL_Y = {"ゃ": "a", "ゅ": "u", "ょ": "o"}
_SMALL_VOWELS = "ぁぃぅぇぉ"


def _hepburn(kana: str) -> str:
    """Hiragana and katakana by Hepburn, long vowels written once (``とうきょう`` -> ``tokyo``,
    ``さとう`` -> ``sato``), as Japanese passports and the corpora spell names; ``ou`` and ``uu``
    before another vowel stay (``いのうえ`` -> ``inoue``)."""
    # katakana -> hiragana: the two blocks are 0x60 apart
    hira = "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in kana)
    out: list[str] = []
    double = False
    for ch in hira:
        if ch == "っ":
            double = True
            continue
        if ch in _SMALL_Y and out and out[-1].endswith("i") and len(out[-1]) > 1:
            stem = out[-1][:-1]
            out[-1] = stem + (_SMALL_Y[ch] if stem.endswith(("sh", "ch", "j")) else "y" + _SMALL_Y[ch])
            continue
        if ch in _SMALL_VOWELS and out and out[-1][-1] in "uie":
            stem = out[-1][:-1] or "w"
            out[-1] = stem + _KANA[ch]
            continue
        if ch == "ー":  # the length mark: long vowels are written once
            continue
        syllable = _KANA.get(ch, ch)
        if double and syllable[:1].isalpha() and syllable[0] not in "aiueo":
            syllable = ("t" if syllable.startswith("ch") else syllable[0]) + syllable
        double = False
        out.append(syllable)
    text = "".join(out)
    return re.sub(r"(o)u(?![aiueo])|(o)o(?![aiueo])|(u)u(?![aiueo])", lambda m: m.group(m.lastindex or 0), text)


#: The usual reading of a kanji in surnames, and its reading after another kanji where that differs
#: (voicing: ``田`` is ``ta`` first and ``da`` after, as in Yamada): what reads a kanji surname that
#: is not in the surname table.
KANJI_READINGS: dict[str, tuple[str, str]] = {
    k: (v.split("/")[0], v.split("/")[-1]) for k, v in (item.split(":") for item in _words(
        "山:yama 田:ta/da 中:naka 村:mura 井:i 川:kawa/gawa 木:ki 本:moto 藤:fuji/to 佐:sa 高:taka 橋:hashi/bashi "
        "小:ko 林:hayashi/bayashi 松:matsu 野:no 島:shima/jima 嶋:shima/jima 石:ishi 原:hara/wara 森:mori 池:ike "
        "上:ue/kami 下:shita 大:o 口:kuchi/guchi 谷:tani/ya 伊:i 加:ka 吉:yoshi 清:kiyo 水:mizu 長:naga 前:mae "
        "後:go 近:kon 坂:saka/zaka 内:uchi 西:nishi 東:higashi 北:kita 南:minami 宮:miya 崎:saki/zaki "
        "岩:iwa 渡:wata 辺:nabe 部:be 和:wa 久:ku 保:bo 千:chi 葉:ba 菅:suga 浅:asa 桜:sakura/zakura 福:fuku "
        "永:naga 平:hira 金:kane 安:yasu 早:haya 青:ao 黒:kuro 白:shira 赤:aka 今:ima 新:nii 杉:sugi 酒:saka "
        "丸:maru 市:ichi 熊:kuma 菊:kiku 浜:hama 浦:ura 尾:o 星:hoshi 矢:ya 秋:aki 春:haru 夏:natsu 冬:fuyu "
        "目:me 芥:akuta 宅:yake 三:mi 二:ni 一:ichi 五:go 十:to 八:ya 百:momo 神:kami 寺:tera/dera 堀:hori "
        "畑:hata/bata 沼:numa 江:e 河:kawa/gawa 梅:ume 桑:kuwa 柳:yanagi 桐:kiri 栗:kuri 峰:mine 岸:kishi "
        "関:seki 城:shiro/jo 根:ne 元:moto 古:furu 若:waka 武:take 徳:toku 織:o 豊:toyo 臣:tomi 宇:u 喜:ki 多:ta "
        "沢:sawa/zawa 澤:sawa/zawa 瀬:se 津:tsu 門:kado 戸:to/do 屋:ya 家:ie 里:sato/zato 園:sono/zono 土:tsuchi "
        "月:tsuki/zuki 日:hi 朝:asa 香:ka 花:hana/bana 草:kusa 竹:take 笹:sasa 芝:shiba 柴:shiba 荒:ara 片:kata "
        "向:mukai 鳥:tori/dori 鶴:tsuru/zuru 亀:kame/game 馬:uma 牧:maki 鹿:shika 鈴:suzu 斎:sai 斉:sai 太:ta "
        "遠:en 工:ku 増:masu 服:hat 樋:hi 辻:tsuji 望:mochi 飯:ii 岡:oka 子:ko/go 郎:ro 端:bata"))}


@functools.cache
def japanese_surnames() -> dict[str, str]:
    """The committed table ``namesclf/data/japanese_surnames.csv``: kanji -> reading (its first line
    names its source)."""
    text = resources.files("namesclf.data").joinpath("japanese_surnames.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return {row["kanji"]: row["reading"] for row in rows}


def _kanji_reading(run: str) -> str:
    """A run of kanji read as a Japanese name: the longest table surname it starts with (then a
    space and the given name), else character by character; characters outside both tables fall
    back to anyascii's pinyin."""
    table = japanese_surnames()
    out: list[str] = []
    i = word_start = 0
    while i < len(run):
        for stop in range(min(len(run), i + 4), i, -1):
            if run[i:stop] in table:
                out.append(table[run[i:stop]])
                if i == 0 and stop < len(run):  # a family name from the table, then the given name
                    out.append(" ")
                    word_start = stop
                i = stop
                break
        else:
            ch = run[i]
            if ch == "々" and out:  # the repeat mark: the previous character again
                out.append(out[-1])
            elif ch in KANJI_READINGS:
                out.append(KANJI_READINGS[ch][1 if i > word_start else 0])
            else:
                out.append(anyascii(ch).lower())
            i += 1
    return "".join(out)


def romanize_japanese(text: str) -> str:
    """Kanji and kana as a Japanese name in Hepburn (``中村`` -> ``Nakamura``, ``さとう`` -> ``Sato``)."""
    out: list[str] = []
    for run, is_kanji in _runs(text, lambda ch: script_of(ch) == "Han" or ch == "々"):
        out.append(_kanji_reading(run) if is_kanji else _hepburn(run))
    return _capitalize_words("".join(out))


# ----------------------------------------------------------------------------- Chinese

def romanize_chinese(text: str) -> str:
    """Han characters as pinyin, each run of them as one word (``张伟`` -> ``Zhangwei``).

    The run is read whole, not cut after the family name: a Chinese family name is one character
    (rarely two), so a whole reading that does not look like a Chinese name (``中村`` ->
    ``Zhongcun``) is itself evidence against Chinese, which the family name alone (``Zhong``)
    would hide.
    """
    return "".join(anyascii(run).lower().capitalize() if is_han else run
                   for run, is_han in _runs(text, lambda ch: script_of(ch) == "Han"))


# ----------------------------------------------------------------------------- Cyrillic

def _table(pairs: str) -> dict[str, str]:
    return {k: v.replace("_", "") for k, v in (item.split(":") for item in pairs.split())}


_RU = _table("а:a б:b в:v г:g д:d е:e ё:e ж:zh з:z и:i й:y к:k л:l м:m н:n о:o п:p р:r с:s т:t у:u ф:f х:kh "
             "ц:ts ч:ch ш:sh щ:shch ъ:_ ы:y ь:_ э:e ю:yu я:ya")
_CYRILLIC = {
    "ru": _RU,
    "uk": {**_RU, **_table("г:h ґ:g е:e є:ye и:y і:i ї:yi й:y х:kh щ:shch ь:_ ю:yu я:ya")},
    "be": {**_RU, **_table("г:h ґ:g і:i ў:u ы:y х:kh ё:yo э:e")},
    "bg": {**_RU, **_table("х:h щ:sht ъ:a ь:y ю:yu я:ya")},
    "sr": _table("а:a б:b в:v г:g д:d ђ:đ е:e ж:ž з:z и:i ј:j к:k л:l љ:lj м:m н:n њ:nj о:o п:p р:r с:s т:t "
                 "ћ:ć у:u ф:f х:h ц:c ч:č џ:dž ш:š"),
    "mk": _table("а:a б:b в:v г:g д:d ѓ:gj е:e ж:ž з:z ѕ:dz и:i ј:j к:k л:l љ:lj м:m н:n њ:nj о:o п:p р:r "
                 "с:s т:t ќ:kj у:u ф:f х:h ц:c ч:č џ:dž ш:š"),
}
_VOWELS_RU = set("аеёиоуыэюяьъ")


def romanize_cyrillic(text: str, scheme: str) -> str:
    """Cyrillic as one language's names are spelled in Latin letters: ``Шевченко`` is Shevchenko
    in every scheme, but ``Григорій`` is Hryhoriy for Ukrainian, ``Щерба`` Shcherba for Russian and
    Shterba for Bulgarian, ``Ђорђевић`` Đorđević for Serbian (folded to Dordevic, as the corpora
    fold Gaj's Latin). Russian writes ``е`` as ``ye`` after a vowel or at the start and ``-ий``
    as ``-y`` (Sergeyev, Dostoevsky), the corpora's usual English forms."""
    table = _CYRILLIC[scheme]
    out: list[str] = []
    for i, ch in enumerate(text):
        low = ch.lower()
        if low not in table:
            out.append(ch)
            continue
        value = table[low]
        previous = text[i - 1].lower() if i else ""
        if scheme == "ru":
            if low == "е" and (not previous or previous in _VOWELS_RU or not previous.isalpha()):
                value = "ye"
            elif low == "й" and previous in ("и", "ы") and (i + 1 == len(text) or not text[i + 1].isalpha()):
                out[-1] = out[-1][:-1]  # -ий, -ый at the end of a word: -y
                value = "y"
        elif scheme == "uk" and low == "й" and previous == "и" and (i + 1 == len(text) or not text[i + 1].isalpha()):
            value = "i"  # -ський: -skyi, the national standard
        out.append(value.capitalize() if ch != low and value else value)
    return "".join(out)


# ----------------------------------------------------------------------------- Greek

_GREEK_PAIRS = {"ου": "ou", "αι": "ai", "ει": "ei", "οι": "oi", "μπ": "b", "ντ": "d", "γγ": "ng", "γκ": "g",
                "τσ": "ts", "τζ": "tz"}
_GREEK = _table("α:a β:v γ:g δ:d ε:e ζ:z η:i θ:th ι:i κ:k λ:l μ:m ν:n ξ:x ο:o π:p ρ:r σ:s ς:s τ:t υ:y φ:f "
                "χ:ch ψ:ps ω:o")


def romanize_greek(text: str) -> str:
    """Greek after ELOT 743 (``Παπαδόπουλος`` -> ``Papadopoulos``), accents dropped."""
    plain = "".join("".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
                    if script_of(ch) == "Greek" else ch for ch in text)
    out: list[str] = []
    i = 0
    while i < len(plain):
        pair = plain[i : i + 2].lower()
        upper = plain[i] != plain[i].lower()
        if pair in _GREEK_PAIRS:
            value, i = _GREEK_PAIRS[pair], i + 2
        else:
            value, i = _GREEK.get(plain[i].lower(), plain[i]), i + 1
        out.append(value.capitalize() if upper else value)
    return "".join(out)


# ----------------------------------------------------------------------------- the schemes

def romanize(text: str, scheme: str) -> str:
    """``text`` in Latin letters by ``scheme`` (``any``, ``ko``, ``ja``, ``zh``, ``ru``, ``uk``,
    ``be``, ``bg``, ``mk``, ``sr``, ``el``); letters of other scripts pass through for
    :func:`~namesclf.text.to_ascii` to fold."""
    if scheme == "any" or text.isascii():
        return text
    text = unicodedata.normalize("NFKC", text)
    if scheme == "ko":
        return "".join(romanize_korean(run) if hangul else run
                       for run, hangul in _runs(text, lambda ch: script_of(ch) == "Hangul"))
    if scheme == "ja":
        return romanize_japanese(text)
    if scheme == "zh":
        return romanize_chinese(text)
    if scheme == "el":
        return romanize_greek(text)
    if scheme in _CYRILLIC:
        return romanize_cyrillic(unicodedata.normalize("NFC", text), scheme)
    raise ValueError(f"unknown romanization scheme {scheme!r}")


SCHEMES = ("any", "ko", "ja", "zh", "ru", "uk", "be", "bg", "mk", "sr", "el")


def _runs(text: str, inside: object) -> list[tuple[str, bool]]:
    """``text`` cut into maximal runs of characters for which ``inside(ch)`` is true or false."""
    out: list[tuple[str, bool]] = []
    for ch in text:
        flag = bool(inside(ch))  # type: ignore[operator]
        if out and out[-1][1] == flag:
            out[-1] = (out[-1][0] + ch, flag)
        else:
            out.append((ch, flag))
    return out


def _capitalize_words(text: str) -> str:
    return " ".join((w[:1].upper() if w[:1].isascii() else w[:1]) + w[1:] for w in text.split(" "))
