//! Writing to stdout: a closed pipe (`| head`) ends the command quietly
//! instead of panicking as `println!` does.

use std::io::Write;

use crate::failure::Failure;

/// Writes `bytes` to stdout and flushes; a closed pipe is success.
pub(crate) fn write(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Other(format!(
            "cannot write to stdout ({e}); check where the output goes"
        ))),
    }
}

/// Writes `line` and a newline to stdout.
pub(crate) fn line(line: &str) -> Result<(), Failure> {
    write(format!("{line}\n").as_bytes())
}
