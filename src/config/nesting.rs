//! Refusing absurdly nested YAML or JSON before a parser sees it.
//!
//! libyaml (behind serde_yaml, which reads trigger files) takes quadratic time on deep
//! nesting: 100,000 `[` took 21 s, and a trigger file like that stalled the daemon. No configuration or trigger file needs
//! more than a few levels, so one linear pass estimates the depth and refuses input past
//! [`MAX_DEPTH`], naming the line. The estimate counts flow brackets (`[`, `{`) outside
//! quoted scalars and comments, plus block levels: a stack of indentations and the
//! compact `- `/`? ` indicators that open a level on the same line. It may count a level
//! too many on odd input, never miss a deep one, and block scalars (`|`, `>`) are skipped.

/// Deepest nesting accepted; serde_json's own recursion limit is 128.
pub(crate) const MAX_DEPTH: usize = 64;

/// Largest configuration or trigger file read, so that no file can make runner use
/// unbounded memory or time.
pub(crate) const MAX_FILE_BYTES: u64 = 16 << 20;

/// Where the input went too deep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TooDeep {
    /// The 1-based line where the depth passed the bound.
    pub(crate) line: usize,
    /// The 1-based column.
    pub(crate) column: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nested more than {MAX_DEPTH} levels deep")
    }
}

/// Checks that `text` (YAML, or JSON, which is YAML's flow style) nests at most
/// [`MAX_DEPTH`] levels.
pub(crate) fn check(text: &str) -> Result<(), TooDeep> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a quoted scalar, which may span lines: the quote character.
    let mut quote: Option<u8> = None;
    // Lines deeper than this belong to a block scalar.
    let mut block_scalar: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let blank = bytes[indent..].iter().all(|b| b.is_ascii_whitespace());
        if let Some(parent) = block_scalar {
            if blank || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        let mut block = 0usize;
        let mut i = 0;
        if quote.is_none() && flow == 0 && !blank && bytes[indent] != b'#' {
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            i = indent;
            // `- - - x` or `? - x` opens a level per indicator on one line.
            while i + 1 < bytes.len() && matches!(bytes[i], b'-' | b'?') && bytes[i + 1] == b' ' {
                block += 1;
                i += 2;
                while i < bytes.len() && bytes[i] == b' ' {
                    i += 1;
                }
            }
        }
        let base = indents.len() + block;
        if base > MAX_DEPTH {
            return Err(TooDeep {
                line: n + 1,
                column: i + 1,
            });
        }
        // Whether the previous significant character lets a token start here.
        let mut token_start = true;
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(q) = quote {
                if b == b'\\' && q == b'"' {
                    i += 2;
                    continue;
                }
                if b == q {
                    if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                    token_start = false;
                }
                i += 1;
                continue;
            }
            match b {
                b'#' if token_start || i == 0 || bytes[i - 1] == b' ' => break,
                b'"' | b'\'' if token_start => quote = Some(b),
                b'[' | b'{' if token_start || flow > 0 => {
                    flow += 1;
                    if base + flow > MAX_DEPTH {
                        return Err(TooDeep {
                            line: n + 1,
                            column: i + 1,
                        });
                    }
                }
                b']' | b'}' if flow > 0 => flow -= 1,
                _ => {}
            }
            token_start = match b {
                b' ' | b'\t' => token_start,
                b'[' | b'{' | b',' => true,
                b':' | b'-' | b'?' => bytes.get(i + 1).is_none_or(|&c| c == b' ') || flow > 0,
                _ => false,
            };
            i += 1;
        }
        // `key: |` or `- >-`: the more indented lines that follow are text.
        if quote.is_none() && flow == 0 {
            let end = line.split(" #").next().unwrap_or("").trim_end();
            let header = end.rsplit(' ').next().unwrap_or("");
            let is_header = header.starts_with(['|', '>'])
                && header[1..]
                    .chars()
                    .all(|c| c == '-' || c == '+' || c.is_ascii_digit())
                && (end.len() == header.len() || end.ends_with(&format!(" {header}")));
            if is_header {
                block_scalar = Some(indent);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_configurations_pass() {
        let text = "jobs:\n  a:\n    command: [\"sh\", \"-c\", \"echo [x] {y}\"]\n    environment: {A: '[', B: \"{\"}\n    script: |\n      if [ x ]; then\n          { echo; }\n      fi\n  b:\n    - - x\n      - y\n# [[[[ a comment\nc: don't [ stop\n";
        check(text).expect("fine");
        check("{\"jobs\": {\"a\": {\"command\": [\"true\"]}}}").expect("json");
        check("").expect("empty");
    }

    #[test]
    fn deep_flow_and_block_nesting_is_refused_fast() {
        let deep = format!("jobs: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let start = std::time::Instant::now();
        let err = check(&deep).expect_err("too deep");
        assert_eq!(err.line, 1);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        check(&"- ".repeat(1000)).expect_err("compact block sequences");
        let mut stairs = String::new();
        for level in 0..200 {
            stairs.push_str(&" ".repeat(level));
            stairs.push_str("k:\n");
        }
        let err = check(&stairs).expect_err("indented mappings");
        assert_eq!(err.line, MAX_DEPTH + 1);
        let limit = format!(
            "a: {}{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        check(&limit).expect("at the bound");
    }
}
