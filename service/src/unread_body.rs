//! [`close_if_unread`]: a connection whose request body was not read to its end is closed
//! after the answer, never drained.
//!
//! Actix-web drops an unread body and, when it is chunked, goes on reading it to its end to
//! reuse the connection, with no deadline: a client that is refused (413, 408, 401, 404, ...)
//! could keep the connection open for ever by trickling chunks. Holding the body until the
//! answer is written makes actix close the connection instead (it discards what still
//! arrives for `client_disconnect_timeout`, then closes). A body read to its end changes
//! nothing: keep-alive is kept.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};

/// The response body, holding the request body until it has been written out.
pub struct HoldingBody {
    inner: BoxBody,
    _request_body: Option<Rc<RefCell<Payload>>>,
}

impl MessageBody for HoldingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// The middleware (`App::wrap(from_fn(close_if_unread))`).
pub async fn close_if_unread(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<HoldingBody>, actix_web::Error> {
    let held = match req.parts_mut().1.take() {
        Payload::None => None,
        payload => {
            let body = Rc::new(RefCell::new(payload));
            let reader = body.clone();
            let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
                Box::pin(futures_util::stream::poll_fn(move |cx| {
                    reader.borrow_mut().poll_next_unpin(cx)
                }));
            req.set_payload(Payload::from(stream));
            Some(body)
        }
    };
    let res = next.call(req).await?;
    Ok(res.map_body(|_, body| HoldingBody {
        inner: body.boxed(),
        _request_body: held,
    }))
}
