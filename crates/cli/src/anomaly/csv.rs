//! Reading `timestamp,value` rows for the backtest: a header naming the
//! columns (or none), timestamps as RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC)
//! or unix seconds, and a line number for every problem.

use std::io::BufRead;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// One data row, its text kept as it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line number in the file.
    pub line: usize,
    pub timestamp_text: String,
    pub value_text: String,
    /// Seconds since the unix epoch.
    pub t: f64,
    /// NaN when the value is missing (empty, `nan`, `null`, `NA`).
    pub value: f64,
}

/// A row that could not be read, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub line: usize,
    pub problem: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Which fields hold the timestamp and the value.
#[derive(Debug, Clone, Copy)]
struct Columns {
    timestamp: usize,
    value: usize,
}

/// Rows of a CSV, read one line at a time.
pub struct Reader<R> {
    lines: std::iter::Enumerate<std::io::Lines<R>>,
    columns: Option<Columns>,
    pending: Option<(usize, String)>,
}

impl<R: BufRead> Reader<R> {
    /// Reads the header, if there is one: a first line whose timestamp field
    /// is not a timestamp. It names the columns `timestamp` and `value`
    /// (any case, any order, other columns ignored), or has just two.
    pub fn new(input: R) -> anyhow::Result<Self> {
        let mut reader = Self { lines: input.lines().enumerate(), columns: None, pending: None };
        let Some((line, text)) = reader.next_line()? else { return Ok(reader) };
        let fields = split(&text);
        if fields.first().is_some_and(|f| parse_time(f).is_some()) {
            reader.columns = Some(Columns { timestamp: 0, value: 1 });
            reader.pending = Some((line, text));
            return Ok(reader);
        }
        let find = |name: &str| fields.iter().position(|f| f.trim().eq_ignore_ascii_case(name));
        reader.columns = Some(match (find("timestamp"), find("value")) {
            (Some(timestamp), Some(value)) => Columns { timestamp, value },
            _ if fields.len() == 2 => Columns { timestamp: 0, value: 1 },
            _ => bail!(
                "line {line}: the header {text:?} names no `timestamp` and `value` columns (expected e.g. `timestamp,value`)"
            ),
        });
        Ok(reader)
    }

    fn next_line(&mut self) -> anyhow::Result<Option<(usize, String)>> {
        if let Some(pending) = self.pending.take() {
            return Ok(Some(pending));
        }
        for (index, text) in self.lines.by_ref() {
            let text = text.with_context(|| format!("reading line {}", index + 1))?;
            if !text.trim().is_empty() {
                return Ok(Some((index + 1, text)));
            }
        }
        Ok(None)
    }

    /// The next row: `Ok(None)` at the end, `Ok(Some(Err(bad)))` for a row
    /// that cannot be read, an error only if the file itself cannot.
    pub fn next_row(&mut self) -> anyhow::Result<Option<Result<Row, BadRow>>> {
        let Some((line, text)) = self.next_line()? else { return Ok(None) };
        let columns = self.columns.unwrap_or(Columns { timestamp: 0, value: 1 });
        Ok(Some(parse_row(line, &text, columns)))
    }
}

fn parse_row(line: usize, text: &str, columns: Columns) -> Result<Row, BadRow> {
    let bad = |problem: String| BadRow { line, problem };
    let fields = split(text);
    let needed = columns.timestamp.max(columns.value) + 1;
    if fields.len() < needed {
        return Err(bad(format!("expected at least {needed} fields, found {}: {text:?}", fields.len())));
    }
    let (timestamp_text, value_text) = (fields[columns.timestamp].trim(), fields[columns.value].trim());
    let t = parse_time(timestamp_text).ok_or_else(|| {
        bad(format!("timestamp {timestamp_text:?} is not RFC 3339, `YYYY-MM-DD HH:MM:SS` or unix seconds"))
    })?;
    let value = parse_value(value_text).ok_or_else(|| bad(format!("value {value_text:?} is not a number")))?;
    Ok(Row { line, timestamp_text: timestamp_text.to_string(), value_text: value_text.to_string(), t, value })
}

/// Splits on commas outside double quotes; quotes are removed.
fn split(text: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in text.trim_end_matches('\r').chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

/// Seconds since the unix epoch, from RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]`
/// or `YYYY-MM-DDTHH:MM:SS[.f]` (UTC), `YYYY-MM-DD`, or a unix time (in
/// seconds, or in milli-, micro- or nanoseconds, told apart by magnitude).
pub fn parse_time(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros() as f64 / 1e6);
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros() as f64 / 1e6);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp() as f64);
    }
    let is_number = !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    let t = text.parse::<f64>().ok().filter(|t| is_number && t.is_finite())?;
    // Unix seconds past 1e11 would be after the year 5000: such numbers are
    // milliseconds, microseconds or nanoseconds.
    let per_second = match t.abs() {
        a if a >= 1e17 => 1e9,
        a if a >= 1e14 => 1e6,
        a if a >= 1e11 => 1e3,
        _ => 1.0,
    };
    Some(t / per_second)
}

/// A number, or NaN for a missing value; `None` if it is neither.
fn parse_value(text: &str) -> Option<f64> {
    let missing = ["", "nan", "null", "na", "none"];
    if missing.iter().any(|m| text.eq_ignore_ascii_case(m)) {
        return Some(f64::NAN);
    }
    text.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> anyhow::Result<Vec<Result<Row, BadRow>>> {
        let mut reader = Reader::new(text.as_bytes())?;
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row()? {
            rows.push(row);
        }
        Ok(rows)
    }

    #[test]
    fn reads_every_timestamp_form_with_or_without_a_header() {
        let text = "timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01T00:05:00Z,2\n1396311000,3\n\n2014-04-01 00:15:00.5,nan\n";
        let rows: Vec<Row> = read(text).unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rows.iter().map(|r| r.t).collect::<Vec<_>>(),
            vec![1396310400.0, 1396310700.0, 1396311000.0, 1396311300.5]
        );
        assert_eq!((rows[0].line, rows[3].line), (2, 6));
        assert_eq!(rows[1].timestamp_text, "2014-04-01T00:05:00Z");
        assert!(rows[3].value.is_nan());
        let headless = read("1396310400,7\n1396310460,8\n").unwrap();
        assert_eq!(headless.len(), 2);
        let units = ["1396310400", "1396310400000", "1396310400000000", "1396310400000000000"];
        assert!(units.iter().all(|u| parse_time(u) == Some(1396310400.0)), "{:?}", units.map(parse_time));
    }

    #[test]
    fn finds_named_columns_in_any_order_and_ignores_others() {
        let rows = read("value,label,timestamp\n5,0,\"2014-04-01 00:00:00\"\n").unwrap();
        let row = rows[0].as_ref().unwrap();
        assert_eq!((row.value, row.t), (5.0, 1396310400.0));
    }

    #[test]
    fn a_bad_row_names_its_line_and_the_problem() {
        let rows =
            read("timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,abc\n2014-13-01 00:00:00,1\nonly\n")
                .unwrap();
        let problems: Vec<String> = rows.into_iter().filter_map(Result::err).map(|b| b.to_string()).collect();
        assert_eq!(
            problems,
            vec![
                "line 3: value \"abc\" is not a number".to_string(),
                "line 4: timestamp \"2014-13-01 00:00:00\" is not RFC 3339, `YYYY-MM-DD HH:MM:SS` or unix seconds"
                    .to_string(),
                "line 5: expected at least 2 fields, found 1: \"only\"".to_string(),
            ]
        );
    }

    #[test]
    fn a_header_without_the_columns_is_refused() {
        let err = read("a,b,c\n1,2,3\n").err().unwrap().to_string();
        assert!(err.contains("line 1") && err.contains("timestamp"), "{err}");
    }
}
