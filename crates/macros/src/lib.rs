//! Attribute macros of chorus. Use them through the `chorus` crate (`#[chorus::remote]`,
//! `#[chorus::actor]`, `#[chorus::spmd]`, `#[chorus::main]`); the code they generate
//! names items of `chorus::__private`.
//!
//! A remote function becomes a unit struct of the same name that still calls like the
//! function (it dereferences to a function pointer) and implements the trait that gives
//! clients its argument and result types, and the function is registered under a stable
//! name (`module::path::name`) that workers look up.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{parse_macro_input, spanned::Spanned, FnArg, GenericArgument, ItemFn, ItemImpl, Pat, PathArguments, ReturnType, Type};

/// Registers a function that workers can run: `client.submit(f, (args,))`.
///
/// Arguments and result must be serde types. A result `Result<T, E>` with `E: Display`
/// makes `Err` a task error; the future's type is then `T`.
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    no_args(attr).unwrap_or_else(|| expand_fn(parse_macro_input!(item as ItemFn), Kind::Remote).unwrap_or_else(|e| e.to_compile_error()).into())
}

/// Registers a function run on every worker at once with a `World` among them:
/// `client.spmd(f, (args,))`. Its first parameter must be `&World`.
#[proc_macro_attribute]
pub fn spmd(attr: TokenStream, item: TokenStream) -> TokenStream {
    no_args(attr).unwrap_or_else(|| expand_fn(parse_macro_input!(item as ItemFn), Kind::Spmd).unwrap_or_else(|e| e.to_compile_error()).into())
}

/// Makes the same binary usable as a worker: when started by a cluster as a worker, the
/// program runs the worker loop instead of the body of `main`.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(e) = no_args(attr) {
        return e;
    }
    let mut f = parse_macro_input!(item as ItemFn);
    if f.sig.ident != "main" {
        return syn::Error::new(f.sig.ident.span(), "#[chorus::main] goes on `fn main`").to_compile_error().into();
    }
    let body = f.block;
    f.block = syn::parse_quote!({
        ::chorus::__private::init_logging("driver");
        ::chorus::__private::worker_entry();
        #body
    });
    quote!(#f).into()
}

/// Makes a type an actor: `client.actor::<T>((args,))` creates it on a worker with
/// `T::new(args)`, and the generated trait `TActor` gives `Actor<T>` one method per
/// `&self`/`&mut self` method, returning futures. Calls to one actor run in order.
#[proc_macro_attribute]
pub fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    if let Some(e) = no_args(attr) {
        return e;
    }
    expand_actor(parse_macro_input!(item as ItemImpl)).unwrap_or_else(|e| e.to_compile_error()).into()
}

fn no_args(attr: TokenStream) -> Option<TokenStream> {
    if attr.is_empty() {
        None
    } else {
        Some(syn::Error::new(Span::call_site(), "this attribute takes no arguments").to_compile_error().into())
    }
}

#[derive(PartialEq)]
enum Kind {
    Remote,
    Spmd,
}

/// The result type users see, and whether the function returns `Result`.
fn output_of(ret: &ReturnType) -> (Type, bool) {
    match ret {
        ReturnType::Default => (syn::parse_quote!(()), false),
        ReturnType::Type(_, ty) => {
            if let Type::Path(p) = &**ty {
                if let Some(last) = p.path.segments.last() {
                    if last.ident == "Result" {
                        if let PathArguments::AngleBracketed(a) = &last.arguments {
                            if let Some(GenericArgument::Type(t)) = a.args.first() {
                                return (t.clone(), true);
                            }
                        }
                    }
                }
            }
            ((**ty).clone(), false)
        }
    }
}

fn encode_output(fallible: bool) -> TokenStream2 {
    if fallible {
        quote!(match out {
            ::core::result::Result::Ok(v) => ::chorus::__private::encode_result(v),
            ::core::result::Result::Err(e) => ::core::result::Result::Err(::chorus::__private::Fault::error(&e)),
        })
    } else {
        quote!(::chorus::__private::encode_result(out))
    }
}

fn typed_params<'a>(inputs: impl Iterator<Item = &'a FnArg>) -> syn::Result<Vec<Type>> {
    inputs
        .map(|a| match a {
            FnArg::Typed(t) => {
                if !matches!(&*t.pat, Pat::Ident(_) | Pat::Wild(_)) {
                    return Err(syn::Error::new(t.pat.span(), "use a plain name for parameters of remote functions"));
                }
                Ok((*t.ty).clone())
            }
            FnArg::Receiver(r) => Err(syn::Error::new(r.span(), "remote functions take no `self`; use #[chorus::actor] for methods")),
        })
        .collect()
}

fn expand_fn(f: ItemFn, kind: Kind) -> syn::Result<TokenStream2> {
    if !f.sig.generics.params.is_empty() || f.sig.asyncness.is_some() {
        return Err(syn::Error::new(f.sig.span(), "remote functions cannot be generic or async"));
    }
    let name = &f.sig.ident;
    let vis = &f.vis;
    let attrs = &f.attrs;
    let impl_name = format_ident!("__chorus_impl_{}", name);
    let mut inner = f.clone();
    inner.sig.ident = impl_name.clone();
    inner.vis = syn::Visibility::Inherited;
    inner.attrs.retain(|a| !a.path().is_ident("doc"));
    let mut params = typed_params(f.sig.inputs.iter())?;
    let all_params = params.clone();
    if kind == Kind::Spmd {
        if params.is_empty() {
            return Err(syn::Error::new(f.sig.span(), "an SPMD function's first parameter must be `&World`"));
        }
        params.remove(0);
    }
    let ret = match &f.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, t) => quote!(#t),
    };
    let (output, fallible) = output_of(&f.sig.output);
    let n = params.len();
    let idx: Vec<usize> = (0..n).collect();
    let args_ident: Vec<_> = (0..n).map(|i| format_ident!("a{}", i)).collect();
    let encode = encode_output(fallible);
    let name_str = name.to_string();
    let (trait_path, entry, world_param, call_sig) = match kind {
        Kind::Remote => (
            quote!(::chorus::__private::RemoteFunction),
            quote!(FunctionEntry),
            quote!(),
            quote!(args: &[&[u8]]),
        ),
        Kind::Spmd => (
            quote!(::chorus::__private::SpmdFunction),
            quote!(SpmdEntry),
            quote!(world,),
            quote!(world: &::std::sync::Arc<::chorus::World>, args: &[&[u8]]),
        ),
    };
    let fn_ptr_params = &all_params;
    Ok(quote! {
        #(#attrs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        #vis struct #name;

        impl ::core::ops::Deref for #name {
            type Target = fn(#(#fn_ptr_params),*) -> #ret;
            fn deref(&self) -> &Self::Target {
                const F: fn(#(#fn_ptr_params),*) -> #ret = #impl_name;
                &F
            }
        }

        impl #trait_path for #name {
            type Args = (#(#params,)*);
            type Output = #output;
            const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #name_str);
        }

        #inner

        const _: () = {
            fn shim(#call_sig) -> ::core::result::Result<::std::vec::Vec<u8>, ::chorus::__private::Fault> {
                ::chorus::__private::check_arity(args, #n)?;
                #( let #args_ident: #params = ::chorus::__private::decode_arg(args[#idx], #idx)?; )*
                let out = #impl_name(#world_param #(#args_ident),*);
                #encode
            }
            ::chorus::__private::inventory::submit! {
                ::chorus::__private::#entry {
                    name: ::core::concat!(::core::module_path!(), "::", #name_str),
                    call: shim,
                }
            }
        };
    })
}

fn expand_actor(item: ItemImpl) -> syn::Result<TokenStream2> {
    if item.trait_.is_some() || !item.generics.params.is_empty() {
        return Err(syn::Error::new(item.span(), "#[chorus::actor] goes on an inherent, non-generic impl block"));
    }
    let self_ty = &item.self_ty;
    let Type::Path(tp) = &**self_ty else {
        return Err(syn::Error::new(self_ty.span(), "#[chorus::actor] needs a named type"));
    };
    let type_ident = &tp.path.segments.last().expect("a path has a segment").ident;
    let class_str = type_ident.to_string();
    let trait_ident = format_ident!("{}Actor", type_ident);
    let vis = quote!(pub);

    let mut ctor = None;
    let mut methods = Vec::new();
    for it in &item.items {
        let syn::ImplItem::Fn(m) = it else { continue };
        match m.sig.inputs.first() {
            Some(FnArg::Receiver(r)) => {
                if r.reference.is_none() {
                    return Err(syn::Error::new(r.span(), "actor methods take `&self` or `&mut self`"));
                }
                methods.push(m);
            }
            _ if m.sig.ident == "new" => ctor = Some(m),
            _ => {}
        }
    }
    let Some(ctor) = ctor else {
        return Err(syn::Error::new(item.span(), "an actor needs `fn new(..) -> Self`, which creates it on a worker"));
    };
    let ctor_params = typed_params(ctor.sig.inputs.iter())?;
    let (_, ctor_fallible) = output_of(&ctor.sig.output);
    let nc = ctor_params.len();
    let cidx: Vec<usize> = (0..nc).collect();
    let cargs: Vec<_> = (0..nc).map(|i| format_ident!("a{}", i)).collect();
    let build = if ctor_fallible {
        quote!(match <#self_ty>::new(#(#cargs),*) {
            ::core::result::Result::Ok(v) => v,
            ::core::result::Result::Err(e) => return ::core::result::Result::Err(::chorus::__private::Fault::error(&e)),
        })
    } else {
        quote!(<#self_ty>::new(#(#cargs),*))
    };

    let mut trait_items = Vec::new();
    let mut impl_items = Vec::new();
    let mut shims = Vec::new();
    for m in methods {
        let mname = &m.sig.ident;
        let mstr = mname.to_string();
        let params = typed_params(m.sig.inputs.iter().skip(1))?;
        let (output, fallible) = output_of(&m.sig.output);
        let n = params.len();
        let idx: Vec<usize> = (0..n).collect();
        let args: Vec<_> = (0..n).map(|i| format_ident!("a{}", i)).collect();
        let gens: Vec<_> = (0..n).map(|i| format_ident!("A{}", i)).collect();
        let encode = encode_output(fallible);
        let doc = format!("Calls `{class_str}::{mstr}` on the actor; calls run in the order they are made.");
        trait_items.push(quote! {
            #[doc = #doc]
            fn #mname<#(#gens: ::chorus::Arg<#params>),*>(&self, #(#args: #gens),*) -> ::chorus::Future<#output>;
        });
        impl_items.push(quote! {
            fn #mname<#(#gens: ::chorus::Arg<#params>),*>(&self, #(#args: #gens),*) -> ::chorus::Future<#output> {
                self.call_method(
                    ::core::concat!(::core::module_path!(), "::", #class_str, "::", #mstr),
                    ::std::vec![#(::chorus::Arg::<#params>::into_slot(#args)),*],
                )
            }
        });
        shims.push(quote! {
            const _: () = {
                fn shim(this: &mut (dyn ::core::any::Any + Send), args: &[&[u8]]) -> ::core::result::Result<::std::vec::Vec<u8>, ::chorus::__private::Fault> {
                    ::chorus::__private::check_arity(args, #n)?;
                    #( let #args: #params = ::chorus::__private::decode_arg(args[#idx], #idx)?; )*
                    let this = this.downcast_mut::<#self_ty>().expect("the worker keeps actors by class");
                    let out = this.#mname(#(#args),*);
                    #encode
                }
                ::chorus::__private::inventory::submit! {
                    ::chorus::__private::MethodEntry {
                        name: ::core::concat!(::core::module_path!(), "::", #class_str, "::", #mstr),
                        call: shim,
                    }
                }
            };
        });
    }
    let trait_doc = format!("Remote calls on an [`Actor<{class_str}>`](::chorus::Actor), generated by `#[chorus::actor]`.");
    Ok(quote! {
        #item

        impl ::chorus::__private::ActorClass for #self_ty {
            type Args = (#(#ctor_params,)*);
            const CLASS: &'static str = ::core::concat!(::core::module_path!(), "::", #class_str);
        }

        const _: () = {
            fn create(args: &[&[u8]]) -> ::core::result::Result<::std::boxed::Box<dyn ::core::any::Any + Send>, ::chorus::__private::Fault> {
                ::chorus::__private::check_arity(args, #nc)?;
                #( let #cargs: #ctor_params = ::chorus::__private::decode_arg(args[#cidx], #cidx)?; )*
                ::core::result::Result::Ok(::std::boxed::Box::new(#build))
            }
            ::chorus::__private::inventory::submit! {
                ::chorus::__private::ActorEntry {
                    class: ::core::concat!(::core::module_path!(), "::", #class_str),
                    create,
                }
            }
        };

        #[doc = #trait_doc]
        #vis trait #trait_ident {
            #(#trait_items)*
        }

        impl #trait_ident for ::chorus::Actor<#self_ty> {
            #(#impl_items)*
        }

        #(#shims)*
    })
}
