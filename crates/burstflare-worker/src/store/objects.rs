//! Streaming uploads into R2 with a size limit and a SHA-256, for bodies
//! whose length is not known up front (bundles, build layers).
//!
//! Bytes are buffered up to one part; a body that fits is stored with one
//! `put`, a larger one goes through a multipart upload whose parts all have
//! [`PART_BYTES`] (R2 wants equal parts but the last). Exceeding the limit or
//! a failed read aborts the multipart upload, so nothing is stored.

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use worker::{Bucket, MultipartUpload, UploadedPart};

use crate::error::ApiError;

/// R2 multipart part size.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Why a streamed upload did not store anything.
#[derive(Debug)]
pub enum PutError {
    TooLarge,
    /// The body could not be read (the client or upstream went away).
    Read(String),
    Store(ApiError),
}

impl From<worker::Error> for PutError {
    fn from(e: worker::Error) -> Self {
        PutError::Store(e.into())
    }
}

/// Streams `body` into `key`; returns (hex SHA-256, size).
pub async fn put_stream<S>(
    bucket: &Bucket,
    key: &str,
    body: S,
    max: u64,
) -> Result<(String, u64), PutError>
where
    S: Stream<Item = worker::Result<Vec<u8>>> + Unpin,
{
    let mut body = body;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut buf: Vec<u8> = Vec::new();
    let mut multipart: Option<(MultipartUpload, Vec<UploadedPart>)> = None;
    let result: Result<(), PutError> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| PutError::Read(e.to_string()))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(PutError::TooLarge);
            }
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
            while buf.len() >= PART_BYTES {
                let part: Vec<u8> = buf.drain(..PART_BYTES).collect();
                if multipart.is_none() {
                    let upload = bucket.create_multipart_upload(key).execute().await?;
                    multipart = Some((upload, Vec::new()));
                }
                if let Some((upload, parts)) = multipart.as_mut() {
                    let n = u16::try_from(parts.len() + 1).unwrap_or(u16::MAX);
                    parts.push(upload.upload_part(n, part).await?);
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some((upload, _)) = &multipart {
            let _ = upload.abort().await;
        }
        return Err(e);
    }
    match multipart {
        Some((upload, mut parts)) => {
            if !buf.is_empty() {
                let n = u16::try_from(parts.len() + 1).unwrap_or(u16::MAX);
                parts.push(upload.upload_part(n, buf).await?);
            }
            upload.complete(parts).await?;
        }
        None => {
            bucket.put(key, buf).execute().await?;
        }
    }
    Ok((hex::encode(hasher.finalize()), size))
}
