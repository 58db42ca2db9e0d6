//! Python's `html.unescape`: numeric character references and named entities (the legacy
//! Latin-1 set, which may omit the `;`, plus the common typographic, Greek and math ones; rarer
//! HTML5 names are left as they are).

/// Named entities that may appear without a trailing `;` (HTML's legacy set).
const LEGACY: &[(&str, char)] = &[
    ("amp", '\u{26}'),
    ("lt", '\u{3c}'),
    ("gt", '\u{3e}'),
    ("quot", '\u{22}'),
    ("AMP", '\u{26}'),
    ("LT", '\u{3c}'),
    ("GT", '\u{3e}'),
    ("QUOT", '\u{22}'),
    ("COPY", '\u{a9}'),
    ("REG", '\u{ae}'),
    ("nbsp", '\u{a0}'),
    ("iexcl", '\u{a1}'),
    ("cent", '\u{a2}'),
    ("pound", '\u{a3}'),
    ("curren", '\u{a4}'),
    ("yen", '\u{a5}'),
    ("brvbar", '\u{a6}'),
    ("sect", '\u{a7}'),
    ("uml", '\u{a8}'),
    ("copy", '\u{a9}'),
    ("ordf", '\u{aa}'),
    ("laquo", '\u{ab}'),
    ("not", '\u{ac}'),
    ("shy", '\u{ad}'),
    ("reg", '\u{ae}'),
    ("macr", '\u{af}'),
    ("deg", '\u{b0}'),
    ("plusmn", '\u{b1}'),
    ("sup2", '\u{b2}'),
    ("sup3", '\u{b3}'),
    ("acute", '\u{b4}'),
    ("micro", '\u{b5}'),
    ("para", '\u{b6}'),
    ("middot", '\u{b7}'),
    ("cedil", '\u{b8}'),
    ("sup1", '\u{b9}'),
    ("ordm", '\u{ba}'),
    ("raquo", '\u{bb}'),
    ("frac14", '\u{bc}'),
    ("frac12", '\u{bd}'),
    ("frac34", '\u{be}'),
    ("iquest", '\u{bf}'),
    ("Agrave", '\u{c0}'),
    ("Aacute", '\u{c1}'),
    ("Acirc", '\u{c2}'),
    ("Atilde", '\u{c3}'),
    ("Auml", '\u{c4}'),
    ("Aring", '\u{c5}'),
    ("AElig", '\u{c6}'),
    ("Ccedil", '\u{c7}'),
    ("Egrave", '\u{c8}'),
    ("Eacute", '\u{c9}'),
    ("Ecirc", '\u{ca}'),
    ("Euml", '\u{cb}'),
    ("Igrave", '\u{cc}'),
    ("Iacute", '\u{cd}'),
    ("Icirc", '\u{ce}'),
    ("Iuml", '\u{cf}'),
    ("ETH", '\u{d0}'),
    ("Ntilde", '\u{d1}'),
    ("Ograve", '\u{d2}'),
    ("Oacute", '\u{d3}'),
    ("Ocirc", '\u{d4}'),
    ("Otilde", '\u{d5}'),
    ("Ouml", '\u{d6}'),
    ("times", '\u{d7}'),
    ("Oslash", '\u{d8}'),
    ("Ugrave", '\u{d9}'),
    ("Uacute", '\u{da}'),
    ("Ucirc", '\u{db}'),
    ("Uuml", '\u{dc}'),
    ("Yacute", '\u{dd}'),
    ("THORN", '\u{de}'),
    ("szlig", '\u{df}'),
    ("agrave", '\u{e0}'),
    ("aacute", '\u{e1}'),
    ("acirc", '\u{e2}'),
    ("atilde", '\u{e3}'),
    ("auml", '\u{e4}'),
    ("aring", '\u{e5}'),
    ("aelig", '\u{e6}'),
    ("ccedil", '\u{e7}'),
    ("egrave", '\u{e8}'),
    ("eacute", '\u{e9}'),
    ("ecirc", '\u{ea}'),
    ("euml", '\u{eb}'),
    ("igrave", '\u{ec}'),
    ("iacute", '\u{ed}'),
    ("icirc", '\u{ee}'),
    ("iuml", '\u{ef}'),
    ("eth", '\u{f0}'),
    ("ntilde", '\u{f1}'),
    ("ograve", '\u{f2}'),
    ("oacute", '\u{f3}'),
    ("ocirc", '\u{f4}'),
    ("otilde", '\u{f5}'),
    ("ouml", '\u{f6}'),
    ("divide", '\u{f7}'),
    ("oslash", '\u{f8}'),
    ("ugrave", '\u{f9}'),
    ("uacute", '\u{fa}'),
    ("ucirc", '\u{fb}'),
    ("uuml", '\u{fc}'),
    ("yacute", '\u{fd}'),
    ("thorn", '\u{fe}'),
    ("yuml", '\u{ff}'),
];

/// Named entities recognised only with a trailing `;`.
const WITH_SEMICOLON: &[(&str, char)] = &[
    ("apos", '\u{27}'),
    ("hellip", '\u{2026}'),
    ("mdash", '\u{2014}'),
    ("ndash", '\u{2013}'),
    ("lsquo", '\u{2018}'),
    ("rsquo", '\u{2019}'),
    ("ldquo", '\u{201c}'),
    ("rdquo", '\u{201d}'),
    ("sbquo", '\u{201a}'),
    ("bdquo", '\u{201e}'),
    ("bull", '\u{2022}'),
    ("trade", '\u{2122}'),
    ("euro", '\u{20ac}'),
    ("dagger", '\u{2020}'),
    ("Dagger", '\u{2021}'),
    ("permil", '\u{2030}'),
    ("lsaquo", '\u{2039}'),
    ("rsaquo", '\u{203a}'),
    ("oelig", '\u{153}'),
    ("OElig", '\u{152}'),
    ("scaron", '\u{161}'),
    ("Scaron", '\u{160}'),
    ("Yuml", '\u{178}'),
    ("fnof", '\u{192}'),
    ("circ", '\u{2c6}'),
    ("tilde", '\u{2dc}'),
    ("ensp", '\u{2002}'),
    ("emsp", '\u{2003}'),
    ("thinsp", '\u{2009}'),
    ("zwnj", '\u{200c}'),
    ("zwj", '\u{200d}'),
    ("lrm", '\u{200e}'),
    ("rlm", '\u{200f}'),
    ("prime", '\u{2032}'),
    ("Prime", '\u{2033}'),
    ("larr", '\u{2190}'),
    ("rarr", '\u{2192}'),
    ("uarr", '\u{2191}'),
    ("darr", '\u{2193}'),
    ("harr", '\u{2194}'),
    ("hearts", '\u{2665}'),
    ("spades", '\u{2660}'),
    ("clubs", '\u{2663}'),
    ("diams", '\u{2666}'),
    ("infin", '\u{221e}'),
    ("ne", '\u{2260}'),
    ("le", '\u{2264}'),
    ("ge", '\u{2265}'),
    ("minus", '\u{2212}'),
    ("sum", '\u{2211}'),
    ("prod", '\u{220f}'),
    ("radic", '\u{221a}'),
    ("asymp", '\u{2248}'),
    ("equiv", '\u{2261}'),
    ("lowast", '\u{2217}'),
    ("sdot", '\u{22c5}'),
    ("Alpha", '\u{391}'),
    ("Beta", '\u{392}'),
    ("Gamma", '\u{393}'),
    ("Delta", '\u{394}'),
    ("Epsilon", '\u{395}'),
    ("Zeta", '\u{396}'),
    ("Eta", '\u{397}'),
    ("Theta", '\u{398}'),
    ("Iota", '\u{399}'),
    ("Kappa", '\u{39a}'),
    ("Lambda", '\u{39b}'),
    ("Mu", '\u{39c}'),
    ("Nu", '\u{39d}'),
    ("Xi", '\u{39e}'),
    ("Omicron", '\u{39f}'),
    ("Pi", '\u{3a0}'),
    ("Rho", '\u{3a1}'),
    ("Sigma", '\u{3a3}'),
    ("Tau", '\u{3a4}'),
    ("Upsilon", '\u{3a5}'),
    ("Phi", '\u{3a6}'),
    ("Chi", '\u{3a7}'),
    ("Psi", '\u{3a8}'),
    ("Omega", '\u{3a9}'),
    ("alpha", '\u{3b1}'),
    ("beta", '\u{3b2}'),
    ("gamma", '\u{3b3}'),
    ("delta", '\u{3b4}'),
    ("epsilon", '\u{3b5}'),
    ("zeta", '\u{3b6}'),
    ("eta", '\u{3b7}'),
    ("theta", '\u{3b8}'),
    ("iota", '\u{3b9}'),
    ("kappa", '\u{3ba}'),
    ("lambda", '\u{3bb}'),
    ("mu", '\u{3bc}'),
    ("nu", '\u{3bd}'),
    ("xi", '\u{3be}'),
    ("omicron", '\u{3bf}'),
    ("pi", '\u{3c0}'),
    ("rho", '\u{3c1}'),
    ("sigmaf", '\u{3c2}'),
    ("sigma", '\u{3c3}'),
    ("tau", '\u{3c4}'),
    ("upsilon", '\u{3c5}'),
    ("phi", '\u{3c6}'),
    ("chi", '\u{3c7}'),
    ("psi", '\u{3c8}'),
    ("omega", '\u{3c9}'),
];

/// Python's replacements for numeric references to C1 controls and a few others.
fn invalid_charref(n: u32) -> Option<char> {
    Some(match n {
        0x0 => '\u{fffd}',
        0xd => '\u{d}',
        0x80 => '\u{20ac}',
        0x81 => '\u{81}',
        0x82 => '\u{201a}',
        0x83 => '\u{192}',
        0x84 => '\u{201e}',
        0x85 => '\u{2026}',
        0x86 => '\u{2020}',
        0x87 => '\u{2021}',
        0x88 => '\u{2c6}',
        0x89 => '\u{2030}',
        0x8a => '\u{160}',
        0x8b => '\u{2039}',
        0x8c => '\u{152}',
        0x8d => '\u{8d}',
        0x8e => '\u{17d}',
        0x8f => '\u{8f}',
        0x90 => '\u{90}',
        0x91 => '\u{2018}',
        0x92 => '\u{2019}',
        0x93 => '\u{201c}',
        0x94 => '\u{201d}',
        0x95 => '\u{2022}',
        0x96 => '\u{2013}',
        0x97 => '\u{2014}',
        0x98 => '\u{2dc}',
        0x99 => '\u{2122}',
        0x9a => '\u{161}',
        0x9b => '\u{203a}',
        0x9c => '\u{153}',
        0x9d => '\u{9d}',
        0x9e => '\u{17e}',
        0x9f => '\u{178}',
        _ => return None,
    })
}
/// Code points that Python's `html.unescape` drops when referenced numerically.
fn dropped_codepoint(n: u32) -> bool {
    matches!(n, 0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f..=0x9f | 0xfdd0..=0xfdef)
        || (n & 0xfffe) == 0xfffe
}

/// Decode one numeric reference body (`#65`, `#x41`) as Python does.
fn numeric(body: &str) -> String {
    let (digits, radix) = match body.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (body, 10),
    };
    // Overlong numbers are out of range, like Python's arbitrary-precision int.
    let n = u32::from_str_radix(digits, radix).unwrap_or(u32::MAX);
    if let Some(c) = invalid_charref(n) {
        return c.to_string();
    }
    if (0xd800..=0xdfff).contains(&n) || n > 0x10ffff {
        return '\u{fffd}'.to_string();
    }
    if dropped_codepoint(n) {
        return String::new();
    }
    char::from_u32(n).map(String::from).unwrap_or_default()
}

/// Decode a named reference body (without `&`), as Python's `html.unescape` does.
fn named(body: &str, semicolon: bool) -> String {
    if semicolon {
        if let Some((_, c)) = LEGACY
            .iter()
            .chain(WITH_SEMICOLON)
            .find(|(name, _)| *name == body)
        {
            return c.to_string();
        }
    } else if let Some((_, c)) = LEGACY.iter().find(|(name, _)| *name == body) {
        return c.to_string();
    }
    // The longest legacy name that prefixes the body wins; the rest stays as text.
    for end in (2..body.len()).rev() {
        if !body.is_char_boundary(end) {
            continue;
        }
        if let Some((_, c)) = LEGACY.iter().find(|(name, _)| *name == &body[..end]) {
            let rest = &body[end..];
            return format!("{c}{rest}{}", if semicolon { ";" } else { "" });
        }
    }
    format!("&{body}{}", if semicolon { ";" } else { "" })
}

/// Python's `html.unescape(text)`.
pub fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (body_len, decoded) = reference(after);
        match decoded {
            Some(decoded) => {
                out.push_str(&decoded);
                rest = &after[body_len..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Match the reference after an `&` (Python's `_charref` pattern); returns the bytes consumed
/// and the replacement, or `None` when nothing matches.
fn reference(after: &str) -> (usize, Option<String>) {
    if let Some(num) = after.strip_prefix('#') {
        let hex = num.starts_with(['x', 'X']);
        let digits_start = if hex { 1 } else { 0 };
        let digits = num[digits_start..]
            .bytes()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return (0, None);
        }
        let body = &num[..digits_start + digits];
        let semicolon = num[body.len()..].starts_with(';');
        return (1 + body.len() + semicolon as usize, Some(numeric(body)));
    }
    let body_len: usize = after
        .chars()
        .take_while(|c| !matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';'))
        .take(32)
        .map(char::len_utf8)
        .sum();
    if body_len == 0 {
        return (0, None);
    }
    let body = &after[..body_len];
    let semicolon = after[body_len..].starts_with(';');
    (body_len + semicolon as usize, Some(named(body, semicolon)))
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn matches_python() {
        assert_eq!(unescape("a &amp; b"), "a & b");
        assert_eq!(unescape("&lt;tag&gt;"), "<tag>");
        assert_eq!(unescape("&#39;&#x41;&#X42"), "'AB");
        assert_eq!(unescape("&amp;amp;"), "&amp;");
        assert_eq!(unescape("&ampx"), "&x");
        assert_eq!(unescape("&eacute;t&eacute"), "été");
        assert_eq!(
            unescape("&hellip; &unknown; & alone"),
            "… &unknown; & alone"
        );
        assert_eq!(unescape("&#128;&#0;&#xD800;"), "€\u{fffd}\u{fffd}");
    }
}
