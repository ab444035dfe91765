//! The codec every generated client and server uses: prost's, except that a request body that
//! does not decode is the caller's fault (`INVALID_ARGUMENT`), not the agent's (`INTERNAL`, which
//! tonic-prost answers and which docs/API.md reserves for the agent's own failures).

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    codec::{Codec, DecodeBuf, Decoder},
    Status,
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

#[derive(Debug, Clone)]
pub struct LineageCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LineageCodec<T, U> {
    fn default() -> Self {
        LineageCodec(PhantomData)
    }
}

impl<T, U> Codec for LineageCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CallerDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CallerDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// prost's decoder with undecodable bytes mapped to `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct CallerDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for CallerDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| {
            Status::invalid_argument(format!("the message does not decode: {}", s.message()))
        })
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}
