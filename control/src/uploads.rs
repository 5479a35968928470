//! Text larger than one request line (`rvsctl apply` of a big file, the
//! commands of a big `rvsadm -R`): it comes in pieces, each appended to an
//! upload ([`crate::proto::Command::UploadConfig`]), and the command that
//! uses it names the finished upload. Uploads are bounded in number and
//! size, and dropped when left idle, so that clients that never finish
//! cannot hold rvsd's memory.

use std::time::{Duration, Instant};

use crate::config::MAX_CONFIG_BYTES;
use crate::proto::Upload;

/// Uploads in progress at once.
const MAX_UPLOADS: usize = 4;
/// An upload not added to for this long is dropped.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// The uploads in progress, at most 4 of at most
/// [`MAX_CONFIG_BYTES`] each.
pub struct Uploads {
    uploads: Vec<PendingUpload>,
    next_upload: u64,
}

impl Default for Uploads {
    fn default() -> Self {
        Uploads {
            uploads: Vec::new(),
            next_upload: 1,
        }
    }
}

struct PendingUpload {
    id: u64,
    text: String,
    touched: Instant,
}

impl Uploads {
    /// Appends `text` to upload `upload`, or starts one.
    pub fn receive(&mut self, upload: Option<u64>, text: String) -> Result<Upload, String> {
        let now = Instant::now();
        self.uploads
            .retain(|pending| now.duration_since(pending.touched) < UPLOAD_IDLE);
        let index = match upload {
            None => {
                if self.uploads.len() >= MAX_UPLOADS {
                    return Err(format!(
                        "{MAX_UPLOADS} configuration uploads are already in progress; try again \
                     once one is applied or left idle for {} s",
                        UPLOAD_IDLE.as_secs()
                    ));
                }
                let id = self.next_upload;
                self.next_upload += 1;
                self.uploads.push(PendingUpload {
                    id,
                    text: String::new(),
                    touched: now,
                });
                self.uploads.len() - 1
            }
            Some(id) => self
                .uploads
                .iter()
                .position(|pending| pending.id == id)
                .ok_or_else(|| unknown_upload(id))?,
        };
        let size = self.uploads[index].text.len() + text.len();
        if size > MAX_CONFIG_BYTES {
            self.uploads.remove(index);
            return Err(too_large(size));
        }
        let pending = &mut self.uploads[index];
        pending.text.push_str(&text);
        pending.touched = now;
        Ok(Upload {
            upload: pending.id,
            bytes: pending.text.len() as u64,
        })
    }

    /// Removes upload `id` and returns its text.
    pub fn take(&mut self, id: u64) -> Result<String, String> {
        let index = self
            .uploads
            .iter()
            .position(|pending| pending.id == id)
            .ok_or_else(|| unknown_upload(id))?;
        Ok(self.uploads.remove(index).text)
    }
}

fn unknown_upload(id: u64) -> String {
    format!(
        "no configuration upload {id}: never started, already applied, or dropped after {} s \
         without a piece",
        UPLOAD_IDLE.as_secs()
    )
}

fn too_large(size: usize) -> String {
    format!(
        "configuration text of {size} bytes is over rvsd's limit of {} MiB",
        MAX_CONFIG_BYTES >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_join_pieces_and_are_consumed_once() {
        let mut state = Uploads::default();
        let first = state.receive(None, "services:\n".to_owned()).unwrap();
        let second = state
            .receive(Some(first.upload), "  []\n".to_owned())
            .unwrap();
        assert_eq!(second.upload, first.upload);
        assert_eq!(second.bytes, 15);
        assert_eq!(state.take(first.upload).unwrap(), "services:\n  []\n");
        let again = state.take(first.upload).unwrap_err();
        assert!(again.starts_with(&format!("no configuration upload {}", first.upload)));
        assert!(state.receive(Some(u64::MAX), String::new()).is_err());
    }
}
