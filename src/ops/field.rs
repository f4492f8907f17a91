//! How a table reads and writes a model's plain fields: one [`Field`] impl per Rust type, told
//! apart by the table's [`Kind`] where one type serves two (seconds and bytes are both `i64`).

use super::OpError;
use super::props::{Kind, Value};

/// A field type a table reads and writes through a [`Value`].
pub trait Field: Sized {
    fn to_value(&self, kind: Kind) -> Value;
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError>;
}

fn wrong(param: &'static str, v: &Value) -> OpError {
    OpError::Invalid {
        param: Some(param),
        message: format!("The value {v:?} does not fit {param}."),
    }
}

fn not_unlimited(param: &'static str) -> OpError {
    OpError::Invalid {
        param: Some(param),
        message: format!("{param} cannot be unlimited."),
    }
}

impl Field for String {
    fn to_value(&self, _: Kind) -> Value {
        Value::Str(self.clone())
    }
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError> {
        match v {
            Value::Str(s) => Ok(s),
            v => Err(wrong(param, &v)),
        }
    }
}

impl Field for Option<String> {
    fn to_value(&self, _: Kind) -> Value {
        self.clone().map(Value::Str).unwrap_or(Value::Null)
    }
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError> {
        match v {
            Value::Str(s) if !s.is_empty() => Ok(Some(s)),
            Value::Str(_) | Value::Null => Ok(None),
            v => Err(wrong(param, &v)),
        }
    }
}

impl Field for bool {
    fn to_value(&self, _: Kind) -> Value {
        Value::Bool(*self)
    }
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError> {
        match v {
            Value::Bool(b) => Ok(b),
            v => Err(wrong(param, &v)),
        }
    }
}

impl Field for Vec<String> {
    fn to_value(&self, _: Kind) -> Value {
        Value::List(self.clone())
    }
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError> {
        match v {
            Value::List(l) => Ok(l),
            Value::Null => Ok(vec![]),
            v => Err(wrong(param, &v)),
        }
    }
}

fn as_i32(param: &'static str, v: i64) -> Result<i32, OpError> {
    i32::try_from(v).map_err(|_| OpError::Invalid {
        param: Some(param),
        message: format!(
            "The value {v} of {param} is out of range. It must be between {} and {}.",
            i32::MIN,
            i32::MAX
        ),
    })
}

impl Field for i32 {
    fn to_value(&self, _: Kind) -> Value {
        Value::Int((*self).into())
    }
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError> {
        match v {
            Value::Int(n) => as_i32(param, n),
            Value::Unlimited => Err(not_unlimited(param)),
            v => Err(wrong(param, &v)),
        }
    }
}

impl Field for Option<i32> {
    fn to_value(&self, _: Kind) -> Value {
        self.map(|n| Value::Int(n.into()))
            .unwrap_or(Value::Unlimited)
    }
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError> {
        match v {
            Value::Int(n) => as_i32(param, n).map(Some),
            Value::Unlimited | Value::Null => Ok(None),
            v => Err(wrong(param, &v)),
        }
    }
}

/// TimeSpans and sizes, told apart by the table's kind.
impl Field for i64 {
    fn to_value(&self, kind: Kind) -> Value {
        match kind {
            Kind::ByteSize => Value::Bytes(*self),
            _ => Value::Span(*self),
        }
    }
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError> {
        match v {
            Value::Span(n) | Value::Bytes(n) => Ok(n),
            Value::Unlimited => Err(not_unlimited(param)),
            v => Err(wrong(param, &v)),
        }
    }
}

/// An optional TimeSpan (None: `$null`) or a size that may be unlimited (None: `unlimited`).
impl Field for Option<i64> {
    fn to_value(&self, kind: Kind) -> Value {
        match (kind, self) {
            (Kind::ByteSize, None) => Value::Unlimited,
            (_, None) => Value::Null,
            (k, Some(n)) => n.to_value(k),
        }
    }
    fn from_value(v: Value, param: &'static str) -> Result<Self, OpError> {
        match v {
            Value::Span(n) | Value::Bytes(n) => Ok(Some(n)),
            Value::Unlimited | Value::Null => Ok(None),
            v => Err(wrong(param, &v)),
        }
    }
}

/// A table entry for a plain field: `field!(Type, "Name", Kind, field)`, read and written as is.
#[macro_export]
macro_rules! field {
    ($t:ty, $name:literal, $kind:expr, $($f:ident).+) => {
        $crate::ops::props::Prop::rw(
            $name,
            $kind,
            |o: &$t| $crate::ops::field::Field::to_value(&o.$($f).+, $kind),
            |o: &mut $t, v, _| {
                o.$($f).+ = $crate::ops::field::Field::from_value(v, $name)?;
                Ok(())
            },
        )
    };
}
