//! open_clip's text clean-up before BPE: `ftfy.fix_text`, `html.unescape` twice, whitespace
//! collapsed and stripped, lower case (the tokenizer's own normalizer lower-cases again and
//! applies NFC).
//!
//! Of ftfy's fixes this applies the ones that matter for prompts: HTML entities, Latin
//! ligatures, full-width and half-width forms, curly quotes, line breaks and control
//! characters. Mojibake repair (`fix_encoding`) is not reproduced: text such as `cafÃ©` keeps
//! its bytes (a known difference, listed in the tokenizer tests).

use unicode_normalization::UnicodeNormalization;

use super::html::unescape;

/// Clean a prompt the way open_clip does before tokenizing.
pub fn clean_text(text: &str) -> String {
    // ftfy.fix_text: entities first (unless the text looks like HTML), then character fixes.
    let mut text = if text.contains('<') {
        text.to_string()
    } else {
        unescape(text)
    };
    text = fix_characters(&text);
    // open_clip's basic_clean: html.unescape(html.unescape(text)).
    text = unescape(&unescape(&text));
    collapse_whitespace(&text).to_lowercase()
}

/// ftfy's ligature, width, quote, line-break and control-character fixes.
fn fix_characters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // uncurl_quotes
            '\u{2018}'..='\u{201b}' | '\u{02bc}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            // fix_line_breaks
            '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            // fix_character_width: the ideographic space and full/half-width forms
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ffef}' => out.extend(c.to_string().nfkc()),
            // remove_control_chars
            '\0'..='\u{8}'
            | '\u{b}'
            | '\u{e}'..='\u{1f}'
            | '\u{7f}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}' => {}
            c => match ligature(c) {
                Some(expansion) => out.push_str(expansion),
                None => out.push(c),
            },
        }
    }
    // "\r\n" became "\n\n" above; both collapse to one space later, as ftfy's "\n" does.
    out
}

/// ftfy's `fix_latin_ligatures` table.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// Python's `re.sub(r"\s+", " ", text).strip()`.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(is_python_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Python's `str.isspace`, which also counts the ASCII separators 0x1c..0x1f.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_open_clip() {
        assert_eq!(clean_text("  A  Photo\tof\na CAT "), "a photo of a cat");
        assert_eq!(clean_text("“quoted” ‘single’"), "\"quoted\" 'single'");
        assert_eq!(clean_text("ﬁsh ﬂower"), "fish flower");
        assert_eq!(clean_text("ＡＢＣ１２３"), "abc123");
        assert_eq!(clean_text("fish &amp;amp; chips"), "fish & chips");
        assert_eq!(clean_text("a&nbsp;b"), "a b");
    }
}
