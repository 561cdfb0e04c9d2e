//! S3: objects written as they are produced, under the stack's KMS key.

pub use aws_sdk_s3::{config, error, operation, primitives, types, Client};

use tracing::warn;

use crate::error::{Error, Result};
use primitives::ByteStream;
use types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};

/// Multipart part size: S3's minimum is 5 MiB; this bounds memory per object.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// One S3 object written as it is produced: a single PutObject when small,
/// a multipart upload once it passes one part.
pub struct ObjectWriter<'a> {
    client: &'a Client,
    bucket: &'a str,
    kms_key: &'a str,
    key: String,
    content_type: &'static str,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    written: u64,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(
        client: &'a Client,
        bucket: &'a str,
        kms_key: &'a str,
        key: String,
        content_type: &'static str,
    ) -> Self {
        ObjectWriter {
            client,
            bucket,
            kms_key,
            key,
            content_type,
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            written: 0,
        }
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buffer.len() >= PART_SIZE {
            self.upload_part().await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self) -> Result<()> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .client
                    .create_multipart_upload()
                    .bucket(self.bucket)
                    .key(&self.key)
                    .content_type(self.content_type)
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(self.kms_key)
                    .send()
                    .await
                    .map_err(|e| Error::from_sdk("CreateMultipartUpload", e))?;
                let id = out.upload_id.ok_or_else(|| {
                    Error::Internal("CreateMultipartUpload returned no id".into())
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buffer);
        let out = self
            .client
            .upload_part()
            .bucket(self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| Error::from_sdk("UploadPart", e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build(),
        );
        Ok(())
    }

    /// Completes the object; returns its size in bytes.
    pub async fn finish(mut self) -> Result<u64> {
        if self.upload_id.is_none() {
            self.client
                .put_object()
                .bucket(self.bucket)
                .key(&self.key)
                .content_type(self.content_type)
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(self.kms_key)
                .body(ByteStream::from(std::mem::take(&mut self.buffer)))
                .send()
                .await
                .map_err(|e| Error::from_sdk("PutObject", e))?;
            return Ok(self.written);
        }
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.client
            .complete_multipart_upload()
            .bucket(self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::from_sdk("CompleteMultipartUpload", e))?;
        Ok(self.written)
    }

    /// Drops a started multipart upload so no parts are left billed.
    pub async fn abort(self) {
        if let Some(upload_id) = &self.upload_id {
            if let Err(e) = self
                .client
                .abort_multipart_upload()
                .bucket(self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .send()
                .await
            {
                warn!(key = %self.key, error = %Error::from_sdk("AbortMultipartUpload", e), "could not abort the upload");
            }
        }
    }
}
