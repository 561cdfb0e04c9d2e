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

/// One small object in one PutObject, under the stack's KMS key. Writing
/// the same key again replaces it.
pub async fn put_small(
    client: &Client,
    bucket: &str,
    kms_key: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<()> {
    small_put(client, bucket, kms_key, key, body)
        .send()
        .await
        .map_err(|e| Error::from_sdk("PutObject", e))?;
    Ok(())
}

fn small_put(
    client: &Client,
    bucket: &str,
    kms_key: &str,
    key: &str,
    body: Vec<u8>,
) -> operation::put_object::builders::PutObjectFluentBuilder {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(kms_key)
        .body(ByteStream::from(body))
}

/// What a conditional write requires of the object it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// There is no such object yet (`If-None-Match: *`).
    Absent,
    /// The object is still this version (`If-Match: <ETag>`).
    Unchanged(String),
}

/// [`put_small`] only if the object is as the caller last read it; `false`
/// when it changed meanwhile (S3 answers 412 PreconditionFailed, or 409
/// ConditionalRequestConflict for a concurrent write: S3 user guide,
/// "conditional writes").
pub async fn put_small_if(
    client: &Client,
    bucket: &str,
    kms_key: &str,
    key: &str,
    body: Vec<u8>,
    precondition: &Precondition,
) -> Result<bool> {
    let request = small_put(client, bucket, kms_key, key, body);
    let request = match precondition {
        Precondition::Absent => request.if_none_match("*"),
        Precondition::Unchanged(etag) => request.if_match(etag),
    };
    match request.send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let err = Error::from_sdk("PutObject", e);
            match err.aws_code() {
                Some("PreconditionFailed" | "ConditionalRequestConflict") => Ok(false),
                _ => Err(err),
            }
        }
    }
}

/// An object as read, with what identifies this version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub body: Vec<u8>,
    pub etag: String,
    /// `None` in a bucket without versioning.
    pub version_id: Option<String>,
}

/// An object's bytes, ETag and version, or `None` when there is no such key.
pub async fn get_versioned(client: &Client, bucket: &str, key: &str) -> Result<Option<Versioned>> {
    let out = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(Error::from_sdk("GetObject", e)),
    };
    let etag = out.e_tag().unwrap_or_default().to_string();
    let version_id = out.version_id().map(str::to_string);
    let data = out.body.collect().await.map_err(|e| Error::Aws {
        operation: "GetObject",
        code: "ReadError".into(),
        message: e.to_string(),
        transient: true,
    })?;
    Ok(Some(Versioned {
        body: data.into_bytes().to_vec(),
        etag,
        version_id,
    }))
}

/// An object's bytes, or `None` when there is no such key.
pub async fn get_bytes(client: &Client, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(get_versioned(client, bucket, key).await?.map(|v| v.body))
}

/// The keys under a prefix, one ListObjectsV2 page (up to 1,000) at a time.
pub struct KeyPages(
    aws_smithy_async::future::pagination_stream::PaginationStream<
        std::result::Result<
            operation::list_objects_v2::ListObjectsV2Output,
            aws_smithy_runtime_api::client::result::SdkError<
                operation::list_objects_v2::ListObjectsV2Error,
                aws_smithy_runtime_api::client::orchestrator::HttpResponse,
            >,
        >,
    >,
);

impl KeyPages {
    pub async fn next(&mut self) -> Option<Result<Vec<String>>> {
        let page = self.0.next().await?;
        Some(
            page.map(|p| {
                p.contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key)
                    .collect()
            })
            .map_err(|e| Error::from_sdk("ListObjectsV2", e)),
        )
    }
}

pub fn keys_under(client: &Client, bucket: &str, prefix: &str) -> KeyPages {
    KeyPages(
        client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send(),
    )
}

/// Deletes every object under a prefix, 1,000 a call; returns how many.
pub async fn delete_under(client: &Client, bucket: &str, prefix: &str) -> Result<u64> {
    use types::{Delete, ObjectIdentifier};
    let mut pages = keys_under(client, bucket, prefix);
    let mut deleted = 0;
    while let Some(page) = pages.next().await {
        let keys = page?;
        if keys.is_empty() {
            continue;
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(format!("delete request: {e}")))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| Error::Internal(format!("delete request: {e}")))?;
        let out = client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteObjects", e))?;
        if let Some(first) = out.errors().first() {
            return Err(Error::Aws {
                operation: "DeleteObjects",
                code: first.code().unwrap_or("Unknown").to_string(),
                message: first.message().unwrap_or_default().to_string(),
                transient: true,
            });
        }
        deleted += keys.len() as u64;
    }
    Ok(deleted)
}
